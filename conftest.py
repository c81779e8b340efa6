"""Fixtures shared by every suite: storage back-ends, private redis-server, real workers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.processes import (
    ChatWorker,
    PostgresDatabase,
    RedisCluster,
    RedisServer,
    require_program,
)


def postgres_server_url() -> str | None:
    """The PostgreSQL server the tests may create databases on (DATABASE_URL, as CI sets it)."""
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgresql", "postgres:")) else None


def _require_postgres() -> str:
    url = postgres_server_url()
    if url is None:
        message = "DATABASE_URL does not name a PostgreSQL server (CI sets it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chat.db'}"
    else:
        yield from _fresh_postgres_database()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server, for tests that are about PostgreSQL itself."""
    yield from _fresh_postgres_database()


def _fresh_postgres_database() -> Iterator[str]:
    db = PostgresDatabase(_require_postgres())
    try:
        yield db.url
    finally:
        db.drop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free port (never the machine's shared one)."""
    require_program("redis-server")
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def async_mode(request) -> str:
    """The ASYNC_MODE of the workers a test starts: gevent, unless the module parametrizes it
    (`pytest.mark.parametrize("async_mode", ASYNC_MODES, indirect=True, scope="module")`)."""
    return getattr(request, "param", "gevent")


@pytest.fixture
def start_worker(tmp_path: Path, async_mode: str):
    """Factory for real chat worker processes; every one started is stopped afterwards."""
    started: list[ChatWorker] = []

    def start(**env: str) -> ChatWorker:
        worker = ChatWorker(tmp_path, env={"ASYNC_MODE": async_mode, **env})
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A private 3-primary Redis Cluster on free ports, stopped by PID afterwards."""
    require_program("redis-server")
    require_program("redis-cli")
    cluster = RedisCluster(tmp_path / "redis-cluster")
    try:
        yield cluster
    finally:
        cluster.stop()
