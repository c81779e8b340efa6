"""One origin policy (chat/transport/origins.py) for Engine.IO's check and the gevent server's.

Through a real worker, WebSocket and long-polling: test_abuse_origin.py.
"""

from __future__ import annotations

import engineio
import pytest
from engineio_fakes import wsgi_request

from chat.transport.origins import OriginPolicy, engineio_setting, refuses_upgrade, same_origins

ENVIRONS = [
    {},
    {"wsgi.url_scheme": "http"},
    {"wsgi.url_scheme": "http", "HTTP_HOST": "chat.example:8080"},
    {"wsgi.url_scheme": "http", "HTTP_HOST": "w1:8001", "HTTP_X_FORWARDED_PROTO": "https"},
    {"wsgi.url_scheme": "http", "HTTP_HOST": "w1:8001", "HTTP_X_FORWARDED_HOST": "chat.example"},
    {
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "w1:8001",
        "HTTP_X_FORWARDED_PROTO": "https, http",
        "HTTP_X_FORWARDED_HOST": " chat.example , proxy",
    },
]


@pytest.mark.parametrize("environ", ENVIRONS)
def test_upstream_engineio_same_origin_rule_is_the_one_origins_copies(environ):
    # When this fails, python-engineio changed its default (same-origin) rule: update
    # origins.same_origins to match it, or decide to differ on purpose.
    server = engineio.Server(async_mode="threading")
    assert server._cors_allowed_origins(environ) == same_origins(environ)


def handshake(server: engineio.Server, origin: str) -> tuple[str, list, bytes]:
    environ = wsgi_request(HTTP_HOST="chat.example", HTTP_ORIGIN=origin)
    answer: list = []
    body = b"".join(server.handle_request(environ, lambda s, h: answer.extend([s, h])))
    return answer[0], answer[1], body


@pytest.mark.parametrize(
    ("origin", "status", "allow_origin"),
    [
        ("http://chat.example", "200 OK", ["http://chat.example"]),
        ("http://evil.example", "400 BAD REQUEST", []),
        ("https://chat.example", "400 BAD REQUEST", []),
    ],
)
def test_upstream_engineio_asks_a_callable_policy_for_the_check_and_the_cors_header(
    origin, status, allow_origin
):
    server = engineio.Server(async_mode="threading", cors_allowed_origins=OriginPolicy(None))
    got_status, headers, body = handshake(server, origin)
    assert got_status == status
    assert [v for k, v in headers if k == "Access-Control-Allow-Origin"] == allow_origin
    if status != "200 OK":
        assert body == b'"Not an accepted origin."'


@pytest.mark.parametrize(
    ("configured", "origin", "allowed"),
    [
        (None, "http://chat.example", True),
        (None, "http://chat.example:80", False),
        (None, "http://evil.example", False),
        (None, None, False),
        (["https://a.example", "https://b.example"], "https://b.example", True),
        (["https://a.example"], "http://chat.example", False),  # a list replaces same-origin
        ("https://a.example", "https://a.example", True),
        ("https://a.example", "https://a.example.evil", False),
    ],
)
def test_the_policy(configured, origin, allowed):
    environ = {"wsgi.url_scheme": "http", "HTTP_HOST": "chat.example"}
    assert OriginPolicy(configured)(origin, environ) is allowed


@pytest.mark.parametrize("configured", ["*", [], ["https://a.example", "*"]])
def test_settings_that_accept_every_origin_are_passed_as_they_are(configured):
    assert engineio_setting(configured) == configured
    environ = {"HTTP_ORIGIN": "http://evil.example", "HTTP_HOST": "chat.example"}
    assert refuses_upgrade(engineio_setting(configured), environ) is False


@pytest.mark.parametrize(
    ("origin", "refused"),
    [("http://chat.example", False), ("http://evil.example", True), (None, False)],
)
def test_an_upgrade_is_refused_exactly_when_engineio_would_refuse_it(origin, refused):
    setting = engineio_setting(None)
    environ = {"wsgi.url_scheme": "http", "HTTP_HOST": "chat.example"}
    if origin is not None:
        environ["HTTP_ORIGIN"] = origin
    assert refuses_upgrade(setting, environ) is refused
    if origin is not None:
        server = engineio.Server(async_mode="threading", cors_allowed_origins=setting)
        status = handshake(server, origin)[0]
        assert (status == "400 BAD REQUEST") is refused
