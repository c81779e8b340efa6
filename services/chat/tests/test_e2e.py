"""End to end: the real worker process (`make run`'s command) and the real python-socketio
client over a WebSocket."""

import pytest
import requests
import socketio

from testkit.clients import ChatClient, register

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["gevent", "eventlet"])
def worker(request, start_worker, database_url):
    return start_worker(ASYNC_MODE=request.param, DATABASE_URL=database_url)


def test_a_conversation_over_a_real_websocket(worker):
    base = worker.url
    alice_name, alice_token = register(base, "alice")
    bob_name, bob_token = register(base, "bob")
    alice = ChatClient(base, alice_token)
    bob = ChatClient(base, bob_token)
    try:
        assert alice.wait_for("session") == {"user": "alice", "node": worker.node_id}
        assert alice.join("general") == {"ok": True, "room": "general", "messages": []}
        assert bob.join("general")["ok"]

        ack = alice.send("general", "hello bob", client_id="first")
        assert ack["ok"] and ack["message"]["seq"] == 1
        assert bob.wait_for("message") == ack["message"]

        # a retry with the same client_id is answered with the stored message, not re-sent
        assert alice.send("general", "hello bob", client_id="first") == ack
        reply = bob.send("general", "hi alice")
        assert alice.wait_for("message", lambda m: m["seq"] == 2) == reply["message"]
        # The marker: alice's next message reaches bob after anything the retry would have
        # sent him, so once bob has it, he has had every message exactly once.
        marker = alice.send("general", "marker")["message"]
        bob.wait_for("message", lambda m: m["id"] == marker["id"])
        assert [m["seq"] for m in bob.received("message")] == [1, 2, 3]

        history = requests.get(
            f"{base}/api/rooms/general/messages",
            headers={"Authorization": f"Bearer {bob_token}"},
            timeout=5,
        )
        assert [m["text"] for m in history.json()["messages"]] == [
            "hello bob",
            "hi alice",
            "marker",
        ]

        # a client that was away catches up by seq
        late = ChatClient(base, register(base, "carol")[1])
        assert [m["seq"] for m in late.join("general", since=1)["messages"]] == [2, 3]
        late.close()

        assert alice.wait_for("presence", lambda p: p["users"] == ["alice", "bob"], timeout=5)
    finally:
        alice.close()
        bob.close()


@pytest.mark.parametrize("auth", [None, {"token": "forged"}, {"token": ""}])
def test_connecting_without_a_valid_token_is_refused_as_unauthorized(worker, auth):
    client = socketio.Client(reconnection=False)
    errors = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(worker.url, auth=auth, transports=["websocket"], wait_timeout=5)
    assert errors and errors[0]["message"] == "unauthorized"
    assert errors[0]["data"]["code"] == "unauthorized"


def test_health_and_metrics(worker):
    health = requests.get(worker.url + "/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["node"] == worker.node_id
    assert health.json()["checks"]["database"] == {"ok": True}
    _, token = register(worker.url)
    c = ChatClient(worker.url, token)
    c.join("general")
    c.send("general", "counted")
    text = requests.get(worker.url + "/metrics", timeout=5).text
    c.close()
    assert "chat_connected_clients 1.0" in text
    assert "chat_messages_stored_total 1.0" in text
    assert 'chat_events_received_total{event="message"} 1.0' in text
    assert 'chat_handler_seconds_bucket{handler="join"' in text
