"""Cross-site WebSocket hijacking: a handshake from a foreign Origin is refused.

Browsers send the page's Origin with every WebSocket handshake and polling request, and a
WebSocket is not covered by CORS: the server must check. Engine.IO's cors_allowed_origins
is None here by default, which means same-origin (the Origin must equal the scheme and Host
of the request). Verified for the WebSocket transport and for long-polling, against a real
worker; the refusal happens before the WebSocket upgrade (chat/transport/http_server.py), so a
foreign page never gets an open socket.
"""

from __future__ import annotations

import json

import pytest
import requests
import websocket

from testkit.clients import assert_still_serving, register
from testkit.processes import ASYNC_MODES, ChatWorker
from testkit.rawsocket import RawPolling, RawWebSocket, ws_url

pytestmark = [
    pytest.mark.e2e,
    # Every protection holds under each async mode (issue 14).
    pytest.mark.parametrize("async_mode", ASYNC_MODES, indirect=True, scope="module"),
]

ALLOWED_ELSEWHERE = "https://chat.example.org"


@pytest.fixture(scope="module")
def worker(tmp_path_factory, async_mode):
    w = ChatWorker(tmp_path_factory.mktemp("abuse-origin"), env={"ASYNC_MODE": async_mode})
    yield w
    w.stop()


def foreign_origins(worker) -> list[str]:
    same = f"http://127.0.0.1:{worker.port}"
    return [
        "http://evil.example",
        "https://127.0.0.1:" + str(worker.port),  # same host, other scheme
        f"http://127.0.0.1:{worker.port + 1}",  # same host, other port
        f"http://localhost:{worker.port}",  # same machine, other name
        same + ".evil.example",  # a prefix of the right origin
        "null",  # sandboxed iframes and file:// pages
    ]


def refused_websocket(url: str, origin: str) -> websocket.WebSocketBadStatusException:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(ws_url(url), origin=origin, timeout=5)
    return refused.value


def test_websocket_handshake_from_foreign_origin_is_refused(worker):
    for origin in foreign_origins(worker):
        refusal = refused_websocket(worker.url, origin)
        assert refusal.status_code == 400, origin
        assert b"Not an accepted origin." in refusal.resp_body
    assert_still_serving(worker.url)


def test_polling_handshake_from_foreign_origin_is_refused(worker):
    for origin in foreign_origins(worker):
        r = requests.get(
            worker.url + "/socket.io/?EIO=4&transport=polling",
            headers={"Origin": origin},
            timeout=5,
        )
        assert r.status_code == 400, origin
        assert r.json() == "Not an accepted origin."
        assert "Access-Control-Allow-Origin" not in r.headers
    assert_still_serving(worker.url)


def test_polling_requests_of_an_open_session_from_foreign_origin_are_refused(worker):
    """A session opened by a legitimate page cannot be driven from another origin."""
    _, token = register(worker.url)
    session = RawPolling(worker.url)
    evil = {"Origin": "http://evil.example"}
    url = f"{session.url}&sid={session.sid}"
    assert (
        requests.post(
            url, data="40" + json.dumps({"token": token}), headers=evil, timeout=5
        ).status_code
        == 400
    )
    assert requests.get(url, headers=evil, timeout=5).status_code == 400
    assert_still_serving(worker.url, token)


def test_same_origin_and_originless_clients_are_served(worker):
    _, token = register(worker.url)
    for origin in [f"http://127.0.0.1:{worker.port}", None]:
        raw = RawWebSocket(worker.url, origin=origin)
        assert raw.connect({"token": token}).startswith("40")
        assert raw.call("join", {"room": "general"})["ok"] is True
        raw.close()
        polling = RawPolling(worker.url, origin=origin)
        assert polling.post("40" + json.dumps({"token": token})).text == "OK"
        if origin:
            assert polling.get().headers["Access-Control-Allow-Origin"] == origin


def test_configured_origins_replace_same_origin(tmp_path, async_mode):
    worker = ChatWorker(
        tmp_path, env={"CORS_ALLOWED_ORIGINS": ALLOWED_ELSEWHERE, "ASYNC_MODE": async_mode}
    )
    try:
        for origin in ["http://evil.example", f"http://127.0.0.1:{worker.port}"]:
            assert refused_websocket(worker.url, origin).status_code == 400
        # The configured page's origin is served (python-socketio's client sends an Origin of
        # its own by default, which a configured list refuses like any other).
        _, token = register(worker.url)
        raw = RawWebSocket(worker.url, origin=ALLOWED_ELSEWHERE)
        assert raw.connect({"token": token}).startswith("40")
        assert raw.call("message", {"room": "general", "text": "hi", "client_id": "x1"})["ok"]
        raw.close()
    finally:
        worker.stop()
