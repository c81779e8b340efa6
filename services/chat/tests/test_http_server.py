"""The request-head deadline (chat/transport/http_server.py and the two servers' handlers).

Through real workers, both async modes: test_abuse_connections.py (slowloris).
"""

from __future__ import annotations

import inspect

import pytest

from chat.transport.http_server import KEEPALIVE_IDLE_SECONDS, request_head_seconds


def test_upstream_servers_read_a_request_head_where_the_deadline_expects():
    from eventlet import wsgi as eventlet_wsgi
    from gevent import pywsgi

    gevent_source = inspect.getsource(pywsgi.WSGIHandler.handle_one_request)
    assert gevent_source.index("self.read_requestline()") < gevent_source.index(
        "self.read_request("
    )
    assert gevent_source.index("self.read_request(") < gevent_source.index(
        "self.handle_one_response()"
    )
    eventlet_source = inspect.getsource(eventlet_wsgi.HttpProtocol.handle_one_request)
    assert eventlet_source.index("self._read_request_line()") < eventlet_source.index(
        "self.parse_request()"
    )
    assert eventlet_source.index("self.parse_request()") < eventlet_source.index(
        "self.handle_one_response()"
    )
    assert "protocol" in inspect.signature(eventlet_wsgi.server).parameters


@pytest.mark.parametrize(
    ("header_timeout", "requests_read", "seconds"),
    [(10, 0, 10), (10, 1, KEEPALIVE_IDLE_SECONDS), (10, 7, KEEPALIVE_IDLE_SECONDS), (90, 1, 90)],
)
def test_the_first_request_has_the_header_timeout_a_kept_alive_one_the_idle_allowance(
    header_timeout, requests_read, seconds
):
    assert request_head_seconds(header_timeout, requests_read) == seconds


def a_socketio(cors_allowed_origins):
    from types import SimpleNamespace

    eio = SimpleNamespace(cors_allowed_origins=cors_allowed_origins)
    return SimpleNamespace(server=SimpleNamespace(eio=eio))


def upgrade_from(origin: str | None, upgrade: str = "websocket"):
    from types import SimpleNamespace

    environ = {"wsgi.url_scheme": "http", "HTTP_HOST": "chat.example", "HTTP_UPGRADE": upgrade}
    if origin is not None:
        environ["HTTP_ORIGIN"] = origin
    return SimpleNamespace(environ=environ)


@pytest.mark.parametrize(
    ("configured", "origin", "upgrade", "plain_http"),
    [
        (None, "http://evil.example", "websocket", True),
        (None, "http://evil.example", "WebSocket", True),
        (None, "http://chat.example", "websocket", False),
        (None, None, "websocket", False),
        (None, "http://evil.example", "", False),  # not an upgrade: Engine.IO answers it
        (["https://app.example"], "http://chat.example", "websocket", True),
        ("*", "http://evil.example", "websocket", False),
        ([], "http://evil.example", "websocket", False),
    ],
)
def test_an_upgrade_from_a_refused_origin_is_served_as_plain_http(
    configured, origin, upgrade, plain_http
):
    from chat.transport.http_server import plain_http_for_foreign_origin
    from chat.transport.origins import engineio_setting

    hook = plain_http_for_foreign_origin(a_socketio(engineio_setting(configured)))
    assert hook(upgrade_from(origin, upgrade)) is plain_http
