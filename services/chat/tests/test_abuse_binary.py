"""Binary payloads: refused, and answered when the client waits for an answer.

The chat's payloads are JSON text; python-socketio would buffer a binary event's attachments
without a bound, so transport/packet_filter.py drops binary packets. A binary event that asks for
an ack gets the error ack `invalid` at once: a client waiting for its ack does not wait
forever. Real worker process, real python-socketio client sending bytes.
"""

from __future__ import annotations

import uuid

import pytest
import requests

from testkit.clients import ChatClient, assert_still_serving, register

pytestmark = pytest.mark.e2e

BINARY_EVENTS = [
    ("message", {"room": "general", "text": b"bytes instead of text"}),
    ("message", ({"room": "general", "text": "text"}, b"an extra binary argument")),
    ("join", {"room": "general", "since": b"\x00\x01"}),
    ("typing", {"room": "general", "blob": b"\xff" * 1000}),
    ("no_such_event", b"just bytes"),
]


@pytest.fixture(scope="module")
def token(worker) -> str:
    return register(worker.url)[1]


def stored(worker, token: str, room: str) -> list[str]:
    r = requests.get(
        f"{worker.url}/api/rooms/{room}/messages",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return [m["text"] for m in r.json()["messages"]]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@pytest.mark.parametrize(
    ("event", "data"), BINARY_EVENTS, ids=[f"{e}-{i}" for i, (e, _) in enumerate(BINARY_EVENTS)]
)
def test_a_binary_event_gets_the_error_ack_invalid(worker, token, transport, event, data):
    before = worker.tracebacks()
    client = ChatClient(worker.url, token, transports=[transport])
    try:
        ack = client.sio.call(event, data, timeout=10)
        assert ack == {
            "ok": False,
            "error": {
                "code": "invalid",
                "message": "binary payloads are not accepted; send text (e.g. base64) in JSON",
            },
        }
        # The same connection goes on working.
        assert client.join("general")["ok"] is True
    finally:
        client.close()
    assert worker.tracebacks() == before


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_binary_without_an_ack_is_dropped_and_nothing_is_stored(worker, token, transport):
    room = f"bin-{uuid.uuid4().hex[:8]}"
    client = ChatClient(worker.url, token, transports=[transport])
    try:
        assert client.join(room)["ok"] is True
        client.sio.emit("message", {"room": room, "text": b"dropped"})
        # A text message after it is stored, and alone: the binary one was not.
        assert client.send(room, "after the bytes")["ok"] is True
    finally:
        client.close()
    assert stored(worker, token, room) == ["after the bytes"]
    assert_still_serving(worker.url, token)
