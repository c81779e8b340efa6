"""The message-queue heartbeat: a missed beat means emits may be lost; a late beat does not.

Real private redis-server: the manager publishes its numbered beats there, and a subscriber
on the same channel hands what it hears to the manager, as its listener thread does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from types import SimpleNamespace

import pytest
import redis

from chat.cluster.liveness import HeartbeatRedisManager
from testkit.processes import free_port


class Heard:
    """What the listener hears on the manager's channel, handed back to the manager."""

    def __init__(self, manager: HeartbeatRedisManager, url: str) -> None:
        self.manager = manager
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(manager.channel)
        self.pubsub.get_message(timeout=2)  # the subscription's confirmation (not handed on)
        self.resumed: list[float] = []
        manager.on_resumed = self.resumed.append

    def deliver(self, timeout: float = 2.0) -> None:
        """Hand every beat published so far to the manager, in order."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.2)
            if message is None:
                return
            self.manager._handle_callback(json.loads(message["data"]))


@pytest.fixture
def manager(redis_server):
    m = HeartbeatRedisManager(redis_server.url, redis_options={"socket_timeout": 1})
    yield m
    m.redis.close()


def test_a_late_beat_is_no_sign_of_loss(manager, redis_server):
    heard = Heard(manager, redis_server.url)
    manager.beat()
    heard.deliver()
    # The hub was busy: the next beat is heard 30 s after the last one, but none is missing.
    manager.last_heard = time.time() - 30
    manager.beat()
    heard.deliver()
    assert manager.last_beat_heard == 2
    assert heard.resumed == []


def test_a_beat_that_never_arrived_means_emits_may_be_lost(manager, redis_server):
    heard = Heard(manager, redis_server.url)
    manager.beat()
    heard.deliver()
    manager.beat()
    heard.pubsub.get_message(timeout=2)  # beat 2 is lost on its way to the listener
    manager.beat()
    heard.deliver()
    assert manager.last_beat_heard == 3
    assert len(heard.resumed) == 1


def test_a_beat_that_could_not_be_published_counts_as_missed(manager, redis_server):
    heard = Heard(manager, redis_server.url)
    manager.beat()
    heard.deliver()
    url = manager.redis_url
    manager.redis_url, manager.connected = f"redis://127.0.0.1:{free_port()}/0", False
    manager.beat()  # Redis unreachable: beat 2 fails, and so would any emit now
    manager.redis_url, manager.connected = url, False
    manager.beat()
    heard.deliver()
    assert len(heard.resumed) == 1


def test_a_listener_that_reconnected_resends_at_the_next_beat(manager, redis_server):
    heard = Heard(manager, redis_server.url)
    manager.beat()
    heard.deliver()
    manager.listener_reconnected = True  # set by the listen loop when Redis dropped it
    manager.beat()
    heard.deliver()
    manager.beat()
    heard.deliver()
    assert len(heard.resumed) == 1


def test_beats_before_the_listener_first_subscribed_are_no_loss(manager, redis_server):
    manager.beat()  # nobody listening yet: a worker starting up
    heard = Heard(manager, redis_server.url)
    manager.beat()
    heard.deliver()
    assert (manager.last_beat_heard, heard.resumed) == (2, [])


class LocalSockets:
    """Stands in for this worker's own sockets: notes what the other workers had heard by then."""

    def __init__(self, url: str, channel: str) -> None:
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)
        self.pubsub.get_message(timeout=2)
        self.written: list[tuple[str, bool]] = []

    def write(self, event: str) -> None:
        # Waits: had the PUBLISH not been sent before this write, it could not arrive during
        # it (the emitting thread is here), and the wait would end empty.
        heard = self.pubsub.get_message(timeout=2)
        self.written.append((event, heard is not None))


def test_other_workers_hear_an_emit_before_its_own_sockets_are_written(
    manager, redis_server, monkeypatch
):
    local = LocalSockets(redis_server.url, manager.channel)
    # The local fan-out is python-socketio's Manager.emit; intercept it there.
    monkeypatch.setattr(
        "socketio.manager.Manager.emit", lambda self, event, *a, **k: local.write(event)
    )
    manager.server = SimpleNamespace(logger=logging.getLogger("test"))
    manager.emit("message", {"text": "hi"}, room="room:general", namespace="/")
    manager.emit("typing", {"user": "ann"}, room="room:general", namespace="/")
    assert local.written == [("message", True), ("typing", True)]


def test_with_redis_gone_an_emit_still_reaches_its_own_sockets(manager, redis_server, monkeypatch):
    written: list[str] = []
    monkeypatch.setattr(
        "socketio.manager.Manager.emit", lambda self, event, *a, **k: written.append(event)
    )
    manager.server = SimpleNamespace(logger=logging.getLogger("test"))
    redis_server.stop()
    manager.emit("message", {"text": "hi"}, room="room:general", namespace="/")
    assert written == ["message"]


def test_a_burst_of_publishes_waits_for_connections_instead_of_dropping_emits(
    manager, redis_server
):
    # More emits at once than the pool has connections: each waits its turn.
    heard = redis.Redis.from_url(redis_server.url).pubsub(ignore_subscribe_messages=True)
    heard.subscribe(manager.channel)
    heard.get_message(timeout=2)
    manager._redis_connect()
    callers = 300
    start = threading.Barrier(callers)
    published: list[object] = []

    def publish(i: int) -> None:
        start.wait(timeout=30)
        published.append(manager.redis.publish(manager.channel, json.dumps({"n": i})))

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert published == [1] * callers  # each reached the one subscriber
    received = set()
    deadline = time.monotonic() + 10
    while len(received) < callers and time.monotonic() < deadline:
        message = heard.get_message(timeout=0.5)
        if message is not None:
            received.add(json.loads(message["data"])["n"])
    assert received == set(range(callers))
