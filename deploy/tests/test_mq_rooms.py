"""Per-room channels between real workers, on one Redis and on a real 3-primary Redis Cluster.

Real processes: a private redis-server (or three in cluster mode), real chat workers
(`python -m chat`) sharing one SQLite database, real Socket.IO clients connected straight to
one worker each, so every delivery to another worker has travelled through Redis.
"""

from __future__ import annotations

import re
import threading
import uuid

import pytest
import redis
import requests

from chat.cluster.mq import room_channel
from chat.realtime.publish import channel as sio_room
from testkit.clients import ChatClient, register
from testkit.processes import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["redis", "cluster"])
def queue_url(request) -> str:
    """REDIS_URL of a private Redis, or of a private Redis Cluster (redis+cluster://)."""
    if request.param == "redis":
        return request.getfixturevalue("redis_server").url
    return request.getfixturevalue("redis_cluster").url


@pytest.fixture
def three_workers(queue_url, start_worker):
    env = {"REDIS_URL": queue_url, "RATE_LIMIT_MESSAGES": "1000"}
    return [start_worker(NODE_ID=f"worker-{i}", **env) for i in range(3)]


def received(worker, kind: str) -> int:
    """chat_mq_received_total{kind} from the worker's /metrics."""
    text = requests.get(worker.url + "/metrics", timeout=5).text
    match = re.search(rf'^chat_mq_received_total\{{kind="{kind}"\}} (\S+)$', text, re.M)
    assert match, f"no chat_mq_received_total{{kind={kind!r}}} on {worker.url}/metrics"
    return int(float(match.group(1)))


def gauge(worker, name: str) -> int:
    text = requests.get(worker.url + "/metrics", timeout=5).text
    return int(float(re.search(rf"^{name} (\S+)$", text, re.M).group(1)))


def post(worker, token: str, room: str, text: str) -> dict:
    r = requests.post(
        f"{worker.url}/api/rooms/{room}/messages",
        json={"text": text, "client_id": uuid.uuid4().hex},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return r.json()


def shard_subscribers(url: str, channel: str) -> int:
    if url.startswith("redis+cluster://"):
        nodes = url.removeprefix("redis+cluster://").split(",")
        client = redis.RedisCluster(host=nodes[0].split(":")[0], port=int(nodes[0].split(":")[1]))
        node = client.get_node_from_key(channel)
        return redis.Redis(host=node.host, port=node.port).execute_command(
            "PUBSUB", "SHARDNUMSUB", channel
        )[1]
    return redis.Redis.from_url(url).execute_command("PUBSUB", "SHARDNUMSUB", channel)[1]


def test_each_worker_receives_the_room_emits_of_its_rooms_and_no_others(queue_url, three_workers):
    tag = uuid.uuid4().hex[:6]
    rooms = [f"only-{i}-{tag}" for i in range(3)]
    clients = []
    try:
        for worker, room in zip(three_workers, rooms, strict=True):  # room i's member on worker i
            _, token = register(worker.url)
            client = ChatClient(worker.url, token)
            assert client.join(room)["ok"] is True
            clients.append(client)

        # Each worker has one room-kind emit of its own already: the join made its client's
        # user a member of a new room, so notify.added sent a `room` notice to `user:<name>`,
        # a channel this worker holds (its client is here) and so hears back from Redis.
        # The join is acked once that notice is published, not once it is heard back, and
        # on a loaded machine the third one was heard after a plain sample (a stray +1).
        def join_notices_heard() -> list[int] | None:
            counts = [received(w, "room") for w in three_workers]
            return counts if min(counts) >= 1 else None

        before = wait_for(join_notices_heard, 10, "each worker to hear its join's `room` notice")
        assert before == [1, 1, 1]
        # Room i gets i + 2 messages, each posted on the next worker (no member there).
        for i, room in enumerate(rooms):
            poster = three_workers[(i + 1) % 3]
            for n in range(i + 2):
                post(poster, clients[(i + 1) % 3].token, room, f"{room} #{n}")
        for i, (client, room) in enumerate(zip(clients, rooms, strict=True)):
            client.wait_for("message", lambda m, r=room, i=i: m["text"] == f"{r} #{i + 1}")
        after = [received(w, "room") for w in three_workers]
        assert [a - b for a, b in zip(after, before, strict=True)] == [2, 3, 4]
        # Nobody else holds the channels (no stray emit can reach a worker later).
        for room in rooms:
            assert shard_subscribers(queue_url, room_channel(sio_room(room))) == 1
        # Each worker holds three channels: its client's room, the client's own channel
        # (`user:<name>`), and the notices of the lobby `general` it belongs to but has not
        # joined (`notify:general:<name>`).
        assert [gauge(w, "chat_mq_subscriptions") for w in three_workers] == [3, 3, 3]
        # Every worker hears the control channel (its heartbeats every 2 s, at least).
        wait_for(
            lambda: all(received(w, "control") > 0 for w in three_workers),
            10,
            "every worker to receive on the control channel",
        )
    finally:
        for client in clients:
            client.close()


def test_clients_joining_a_streaming_room_on_a_new_worker_miss_nothing(three_workers):
    """The join race: a message is live, in the join's history, or both; never neither.

    Plain clients that never catch up: a message published after a join read its history
    but before the worker heard the room's channel would be missing for good.
    """
    poster_worker, join_worker, _ = three_workers
    tag = uuid.uuid4().hex[:6]
    rooms = [f"race-{i}-{tag}" for i in range(4)]
    per_room = 30
    _, poster_token = register(poster_worker.url)
    for room in rooms:
        r = requests.post(
            f"{poster_worker.url}/api/rooms",
            json={"name": room},
            headers={"Authorization": f"Bearer {poster_token}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
    started = {room: threading.Event() for room in rooms}
    errors: list[str] = []

    def stream(room: str) -> None:
        try:
            for n in range(1, per_room + 1):
                post(poster_worker, poster_token, room, f"{room} #{n}")
                if n == 3:
                    started[room].set()
        except Exception as exc:  # reported below, never swallowed
            errors.append(f"{room}: {exc}")
            started[room].set()

    streams = [threading.Thread(target=stream, args=(r,), daemon=True) for r in rooms]
    for thread in streams:
        thread.start()
    joined: dict[str, tuple[ChatClient, list[dict]]] = {}
    try:
        for room in rooms:  # each room's first member on join_worker, mid-stream
            assert started[room].wait(30)
            _, token = register(join_worker.url)
            client = ChatClient(join_worker.url, token)
            ack = client.join(room, since=0)
            assert ack["ok"] is True and "more" not in ack
            joined[room] = (client, ack["messages"])
        for thread in streams:
            thread.join(timeout=120)
        assert errors == []
        for room, (client, history) in joined.items():
            # The last message arrives live, unless the stream had ended before the join (a
            # loaded machine registers the joiner slowly): then its history holds it.
            if per_room not in {m["seq"] for m in history}:
                client.wait_for(
                    "message", lambda m, r=room: m["room"] == r and m["seq"] == per_room
                )
            live = [m["seq"] for m in client.received("message") if m["room"] == room]
            seen = {m["seq"] for m in history} | set(live)
            assert seen == set(range(1, per_room + 1)), (
                f"{room}: missing {sorted(set(range(1, per_room + 1)) - seen)}"
            )
    finally:
        for client, _ in joined.values():
            client.close()
