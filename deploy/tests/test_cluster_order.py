"""One connection's events are handled in the order received; other connections never wait.

A bot, or a client flushing its outbox, emits many messages without waiting for each ack.
Its messages must be stored in the order it sent them (python-socketio's default handles each
event in a task of its own, and they raced each other to the database). Real processes: three
workers on PostgreSQL behind nginx, a private redis-server, the python-socketio client.
"""

from __future__ import annotations

import threading
import time
import uuid

import psycopg2
import pytest
import requests

from testkit.clients import ChatClient, register

pytestmark = pytest.mark.e2e

BURST = 20
# Generous liveness bounds for a busy 2-core machine, not performance targets.
ACK_SECONDS = 30.0
# How long the test holds the slow room's row lock: the slow handler waits at least this long.
LOCK_SECONDS = 6.0
# Another connection's message must be acked inside the time the lock is held: behind the
# slow connection it would take at least LOCK_SECONDS.
OTHER_CONNECTION_SECONDS = 4.0


def libpq_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg2://", "postgresql://")


def stored_texts(base_url: str, token: str, room: str) -> list[str]:
    r = requests.get(
        f"{base_url}/api/rooms/{room}/messages",
        params={"limit": 100},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return [m["text"] for m in r.json()["messages"]]


def emit_burst(client: ChatClient, room: str, texts: list[str]) -> list[dict]:
    """Emit every text at once (no waiting between them); the acks, in the order sent."""
    acks: dict[int, dict] = {}
    done = threading.Event()

    def on_ack(i: int):
        def record(ack: dict) -> None:
            acks[i] = ack
            if len(acks) == len(texts):
                done.set()

        return record

    for i, text in enumerate(texts):
        client.sio.emit(
            "message",
            {"room": room, "text": text, "client_id": f"{room}-{i}"},
            callback=on_ack(i),
        )
    assert done.wait(ACK_SECONDS), f"{len(acks)} of {len(texts)} acks arrived"
    return [acks[i] for i in range(len(texts))]


@pytest.fixture(params=["gevent", "eventlet"])
def pg_cluster(request, start_cluster, postgres_url):
    return start_cluster(async_mode=request.param, database_url=postgres_url)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_a_burst_from_one_socket_is_stored_in_the_order_sent(pg_cluster, transport):
    room = f"order-{uuid.uuid4().hex[:8]}"
    _, token = register(pg_cluster.url)
    client = ChatClient(pg_cluster.url, token, transports=[transport])
    try:
        assert client.join(room)["ok"] is True
        texts = [str(i) for i in range(BURST)]
        acks = emit_burst(client, room, texts)
    finally:
        client.close()
    assert all(ack["ok"] for ack in acks), acks
    assert [ack["message"]["text"] for ack in acks] == texts
    assert [ack["message"]["seq"] for ack in acks] == list(range(1, BURST + 1))
    assert stored_texts(pg_cluster.url, token, room) == texts


def test_a_slow_connection_does_not_hold_up_another(start_worker, postgres_url):
    """A handler blocked in PostgreSQL delays its own connection's later events, no one else's."""
    # The slow handler must outwait the lock, not give up on it: the database deadline
    # (DATABASE_TIMEOUT_SECONDS, 3 s by default) is raised above LOCK_SECONDS for this worker.
    worker = start_worker(DATABASE_URL=postgres_url, DATABASE_TIMEOUT_SECONDS=str(int(ACK_SECONDS)))
    _, slow_token = register(worker.url)
    _, other_token = register(worker.url)
    slow = ChatClient(worker.url, slow_token)
    other = ChatClient(worker.url, other_token)
    lock = psycopg2.connect(libpq_dsn(postgres_url))
    try:
        assert slow.join("slow")["ok"] and other.join("quick")["ok"]
        cur = lock.cursor()
        cur.execute("SELECT id FROM rooms WHERE name = 'slow' FOR UPDATE")
        locked_at = time.monotonic()
        # The first waits inside PostgreSQL for the row lock; the second queues behind it.
        slow_acks = []
        slow_done = threading.Event()

        def on_slow_ack(ack: dict) -> None:
            slow_acks.append(ack)
            if len(slow_acks) == 2:
                slow_done.set()

        for text in ("first", "second"):
            slow.sio.emit("message", {"room": "slow", "text": text}, callback=on_slow_ack)

        started = time.monotonic()
        quick = other.send("quick", "not held up")
        quick_seconds = time.monotonic() - started
        assert quick["ok"] is True, quick
        assert quick_seconds < OTHER_CONNECTION_SECONDS, f"{quick_seconds:.2f} s"
        assert slow_acks == []  # still held: the lock is ours until the commit below

        time.sleep(max(0.0, LOCK_SECONDS - (time.monotonic() - locked_at)))
        lock.commit()
        assert slow_done.wait(ACK_SECONDS)
        assert time.monotonic() - locked_at >= LOCK_SECONDS  # the slow one really was held
        assert [a["message"]["text"] for a in slow_acks] == ["first", "second"], slow_acks
        assert [a["message"]["seq"] for a in slow_acks] == [1, 2]
    finally:
        lock.close()
        slow.close()
        other.close()
    assert stored_texts(worker.url, other_token, "slow") == ["first", "second"]
