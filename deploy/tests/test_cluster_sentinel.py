"""A cluster whose REDIS_URL names Redis Sentinel (`redis+sentinel://`), as deploy/README.md says.

Both users of Redis in a worker must follow Sentinel to the master: python-socketio's message
queue (which parses the URL itself) and the shared state (presence, rate limits, healthz).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from testkit.clients import ChatClient, register
from testkit.processes import Process, RedisServer, free_port

SERVICE = "chatmaster"


@pytest.fixture
def sentinel_url(tmp_path: Path):
    """A private master and one real Sentinel watching it; yields the redis+sentinel:// URL."""
    master = RedisServer(tmp_path / "master")  # started and awaited
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {master.port} 1\n"
    )
    sentinel = Process(
        "sentinel", [master.argv[0], str(conf), "--sentinel"], tmp_path / "sentinel.log"
    )
    sentinel.start()
    try:
        # format of python-socketio's parse_redis_sentinel_url: hosts, then /db/service
        yield f"redis+sentinel://127.0.0.1:{port}/0/{SERVICE}", sentinel
    finally:
        sentinel.stop()
        master.stop()


def test_workers_find_the_master_through_sentinel(start_cluster, sentinel_url):
    url, sentinel = sentinel_url
    cluster = start_cluster(workers=2, redis_url=url)
    assert cluster.redis is None  # no private redis: the given URL is used
    room = f"sentinel-{uuid.uuid4().hex[:8]}"
    clients = []
    try:
        for worker in cluster.workers:
            health = worker.healthz().json()
            assert health["checks"]["redis"] == {"ok": True}, health
            _, token = register(worker.url)
            client = ChatClient(worker.url, token)
            assert client.join(room)["ok"] is True
            clients.append(client)
        on_1, on_2 = clients
        assert on_1.send(room, "through the master Sentinel named")["ok"] is True
        on_2.wait_for("message", lambda m: m["text"] == "through the master Sentinel named")
        # Presence lives in the same Redis: worker 2 sees worker 1's user.
        users = {u for c in clients for u in [c.wait_for("session")["user"]]}
        on_2.wait_for("presence", lambda p: p["room"] == room and set(p["users"]) == users)
    finally:
        for client in clients:
            client.close()
    assert sentinel.alive()
