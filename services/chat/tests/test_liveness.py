"""The message-queue heartbeat: a missed beat means emits may be lost; a late beat does not.

Real private redis-server: the manager publishes its numbered beats there, and a subscriber
on the same channel hands what it hears to the manager, as its listener thread does.
"""

from __future__ import annotations

import json
import time

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
