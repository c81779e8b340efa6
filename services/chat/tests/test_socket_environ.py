"""A connected socket's environ keeps only what its events read (chat/transport/socket_environ).

The function on a dict; the environ python-socketio keeps after an accepted connect (Flask-
SocketIO's test client, in process); and what an event's request context sees on a real
worker (gevent and eventlet, WebSocket and long-polling) with the real python-socketio client.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from chat.extensions import socketio, socketio_server
from chat.transport.socket_environ import KEPT_KEYS, keep_only_what_events_read
from testkit.clients import ChatClient, register
from testkit.processes import (
    ASYNC_MODES,
    REPO_ROOT,
    HttpServer,
    free_port,
    worker_environment,
)

# What an event's request context finds in the environ on a real worker: the kept keys the
# server sets, and Werkzeug's own entry for the Request being handled.
SEEN_BY_AN_EVENT = {
    "flask.app",
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_NAME",
    "SERVER_PORT",
    "HTTP_HOST",
    "wsgi.url_scheme",
    "HTTP_CONNECTION",
    "REMOTE_ADDR",
    "werkzeug.request",
}


def test_keeps_exactly_the_listed_keys_in_the_same_dict():
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/socket.io/",
        "QUERY_STRING": "EIO=4&transport=websocket",
        "HTTP_HOST": "chat.example:8000",
        "REMOTE_ADDR": "10.0.0.7",
        "wsgi.url_scheme": "https",
        "flask.app": "the app",
        "wsgi.input": object(),
        "wsgi.errors": object(),
        "wsgi.websocket": object(),
        "HTTP_ORIGIN": "https://chat.example",
        "HTTP_COOKIE": "a=b",
        "HTTP_USER_AGENT": "test",
        "eventlet.input": object(),
        "werkzeug.proxy_fix.orig": {"REMOTE_ADDR": "127.0.0.1"},
    }
    same = environ
    keep_only_what_events_read(environ)
    assert environ is same
    assert environ == {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/socket.io/",
        "QUERY_STRING": "EIO=4&transport=websocket",
        "HTTP_HOST": "chat.example:8000",
        "REMOTE_ADDR": "10.0.0.7",
        "wsgi.url_scheme": "https",
        "flask.app": "the app",
    }


def test_the_kept_keys_are_the_ones_read_after_the_connect():
    assert KEPT_KEYS == (
        "flask.app",
        "saved_session",
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "SERVER_NAME",
        "SERVER_PORT",
        "HTTP_HOST",
        "wsgi.url_scheme",
        "HTTP_CONNECTION",
        "HTTP_UPGRADE",
        "REMOTE_ADDR",
    )


def test_upstream_socketio_keeps_the_dict_the_connect_handler_was_given(app: Flask, accounts):
    """The saving relies on python-socketio keeping, for the socket's life, the very dict
    Flask-SocketIO's connect handler runs on (changed in place there): if upstream ever keeps
    a copy, the full environ stays and this fails."""
    client = socketio.test_client(app, auth={"token": accounts.token("ada")})
    assert client.is_connected()
    server = socketio_server()
    kept = server.get_environ(server.manager.sid_from_eio_sid(client.eio_sid, "/"))
    # The test client's environ (Werkzeug's EnvironBuilder) has no REMOTE_ADDR.
    assert set(kept) == {
        "flask.app",
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "SERVER_NAME",
        "SERVER_PORT",
        "HTTP_HOST",
        "wsgi.url_scheme",
        "werkzeug.request",
    }
    assert kept["werkzeug.request"] is None  # Flask resets it when the connect's context ends
    client.disconnect()


@pytest.fixture(scope="module", params=ASYNC_MODES)
def probe_worker(request, tmp_path_factory) -> Iterator[HttpServer]:
    """A real worker with an `environ` event that acks what its request context sees."""
    workdir = tmp_path_factory.mktemp(f"environ-{request.param}")
    port = free_port()
    env = worker_environment(
        {
            "PORT": str(port),
            "NODE_ID": f"environ-{port}",
            "CHAT_DATA_DIR": str(workdir),
            "ASYNC_MODE": request.param,
        }
    )
    worker = HttpServer(
        f"environ-{request.param}",
        [sys.executable, str(Path(__file__).with_name("environ_worker.py"))],
        workdir / "worker.log",
        env=env,
        cwd=REPO_ROOT,
    )
    worker.port = port
    worker.start()
    try:
        worker.wait_healthy()
        yield worker
    finally:
        worker.stop()


@pytest.mark.e2e
@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_an_event_sees_the_sid_and_the_kept_request(probe_worker: HttpServer, transport: str):
    token = register(probe_worker.url)[1]
    client = ChatClient(probe_worker.url, token, transports=[transport])
    try:
        client.wait_for("session")
        seen = client.call("environ", {})
        again = client.call("environ", {})
        sid = client.sio.get_sid()
    finally:
        client.sio.disconnect()
    upgrade = {"HTTP_UPGRADE"} if transport == "websocket" else set()
    assert set(seen["keys"]) == SEEN_BY_AN_EVENT | upgrade
    assert again == seen
    assert seen["sid"] == sid
    assert seen["remote_addr"] == "127.0.0.1"
    assert seen["host"] == f"127.0.0.1:{probe_worker.port}"
    assert seen["path"] == "/socket.io/"
    assert seen["scheme"] == "http"
    assert seen["args"]["transport"] == transport
    assert seen["args"]["EIO"] == "4"
