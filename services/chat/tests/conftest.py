"""Fixtures for the worker's unit tests: an app on a fresh database, REST and Socket.IO clients.

The app runs in threading mode without a message queue: Flask-SocketIO's test client refuses
a queue, and unit tests need no green threads. End-to-end tests start real processes instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from chat import create_app
from chat.extensions import db, socketio
from testkit.clients import DEFAULT_PASSWORD, register
from testkit.processes import ChatWorker


@pytest.fixture
def make_app(database_url: str, tmp_path) -> Iterator[Callable[..., Flask]]:
    """Builds the app for unit tests (threading mode, no Redis, the test database) with these
    settings changed; every app built is disposed of after the test."""
    built: list[Flask] = []

    def make(**settings: object) -> Flask:
        app = create_app(
            {
                "TESTING": True,
                "SQLALCHEMY_DATABASE_URI": database_url,
                "SQLALCHEMY_ENGINE_OPTIONS": {},
                "ASYNC_MODE": "threading",
                "REDIS_URL": None,
                "SECRET_KEY": "unit-test-secret-of-at-least-32-chars",
                "NODE_ID": "unit-node",
                "WEB_ROOT": str(tmp_path / "web"),
                **settings,
            }
        )
        built.append(app)
        return app

    yield make
    for app in built:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(
        RATE_LIMIT_MESSAGES=1000,
        # Unit tests register, join and create rooms far more often than a person does;
        # the tests of each limit set their own.
        RATE_LIMIT_REGISTRATIONS=100_000,
        RATE_LIMIT_JOINS=100_000,
        RATE_LIMIT_ROOM_CREATIONS=100_000,
        RATE_LIMIT_READS=100_000,
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Accounts:
    """Registers users over the REST API and hands out their bearer tokens."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def token(self, username: str, password: str = DEFAULT_PASSWORD) -> str:
        r = self.client.post("/api/users", json={"username": username, "password": password})
        # Either is right: token() registers on first use and is called again for the same
        # user (409: already registered), as tests ask for a user's headers many times.
        assert r.status_code in (201, 409), r.get_json()
        r = self.client.post("/api/tokens", json={"username": username, "password": password})
        assert r.status_code == 200, r.get_json()
        return r.get_json()["token"]

    def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username)}"}


@pytest.fixture
def accounts(client: FlaskClient) -> Accounts:
    return Accounts(client)


@pytest.fixture
def sio_client(app: Flask, client: FlaskClient, accounts: Accounts) -> Callable:
    """Factory: a Flask-SocketIO test client connected as `username` (registered on demand)."""

    def connect(username: str):
        sio = socketio.test_client(
            app, flask_test_client=client, auth={"token": accounts.token(username)}
        )
        assert sio.is_connected()
        return sio

    return connect


@pytest.fixture(scope="module")
def worker(request, tmp_path_factory, async_mode: str) -> Iterator[ChatWorker]:
    """One real worker process (SQLite, no Redis; gevent unless the module parametrizes
    async_mode) shared by a module's tests, with the module's `WORKER_ENV` (a dict of
    settings, e.g. the limits the module tests) when it defines one."""
    started = ChatWorker(
        tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]),
        env={"ASYNC_MODE": async_mode, **getattr(request.module, "WORKER_ENV", {})},
    )
    yield started
    started.stop()


@pytest.fixture(scope="module")
def token(worker: ChatWorker) -> str:
    """The bearer token of a user registered once on the module's worker."""
    return register(worker.url)[1]
