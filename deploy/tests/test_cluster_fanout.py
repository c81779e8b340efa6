"""Cross-node fan-out: an emit on any worker reaches the room's clients on every worker, once.

Three real workers share a private redis-server as the Socket.IO message queue; each test
client connects straight to one worker, so every delivery to another worker's client has
travelled through Redis.
"""

from __future__ import annotations

import uuid

import pytest
import requests

from testkit.clients import ChatClient, register


@pytest.fixture(params=["gevent", "eventlet"])
def cluster(request, shared_cluster, start_cluster):
    """The cluster under test, in each async mode (gevent is the default and is shared)."""
    if request.param == "gevent":
        return shared_cluster
    return start_cluster(async_mode=request.param)


def texts(client: ChatClient, room: str) -> list[str]:
    return [m["text"] for m in client.received("message") if m["room"] == room]


def test_a_message_reaches_the_room_on_every_worker_exactly_once(cluster):
    room = f"fanout-{uuid.uuid4().hex[:8]}"
    clients = []
    try:
        for worker in cluster.workers:  # one client on each worker, connected directly
            _, token = register(worker.url)
            client = ChatClient(worker.url, token)
            assert client.wait_for("session")["node"] == worker.node_id
            assert client.join(room)["ok"] is True
            clients.append(client)
        on_1, on_2, on_3 = clients

        # A Socket.IO message sent on worker 1, then a REST post on worker 3.
        sent = on_1.send(room, "hello from worker 1")
        assert sent["ok"] is True, sent
        r = requests.post(
            f"{cluster.workers[2].url}/api/rooms/{room}/messages",
            json={"text": "posted on worker 3", "client_id": uuid.uuid4().hex},
            headers={"Authorization": f"Bearer {on_3.token}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        posted = r.json()

        # One more message from worker 2 closes the window: the queue delivers each worker's
        # publications in order, so once it has arrived a duplicate of the first two would too.
        assert on_2.send(room, "closing marker")["ok"] is True
        for client in clients:
            client.wait_for("message", lambda m: m["text"] == "closing marker")
            assert texts(client, room) == [
                "hello from worker 1",
                "posted on worker 3",
                "closing marker",
            ]
            delivered = [m for m in client.received("message") if m["room"] == room]
            assert delivered[0] == sent["message"]
            assert delivered[1] == posted
            assert [m["seq"] for m in delivered] == [1, 2, 3]
    finally:
        for client in clients:
            client.close()
