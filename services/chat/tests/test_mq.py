"""The message queue (cluster/mq.py) over a real private redis-server.

Each "worker" here is a ShardedRedisManager inside a python-socketio Server in threading mode;
the local fan-out (cluster/fanout.py's LocalFanout.emit) is recorded, not written to sockets.
Sockets are added with the manager's own connect/enter_room, as the server does.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import threading
import time
from collections import Counter
from types import SimpleNamespace

import pytest
import redis
import socketio
from socketio.pubsub_manager import PubSubManager

from chat.cluster import mq
from chat.cluster.mq import ShardedRedisManager, room_channel
from testkit.processes import free_port, wait_for


class Worker:
    """One manager in its own Server, recording what reaches its local sockets."""

    def __init__(self, url: str, unsubscribe_delay: float = 30.0) -> None:
        self.received: Counter[str] = Counter()
        self.manager = ShardedRedisManager(
            url, unsubscribe_delay=unsubscribe_delay, on_received=self._count
        )
        self.server = socketio.Server(client_manager=self.manager, async_mode="threading")
        self.resumed: list[set[str] | None] = []
        self.manager.on_resumed = lambda rooms, silence: self.resumed.append(rooms)
        self.manager.initialize()
        control = self.manager.subs[self.manager.channel]
        assert control.confirmed.wait(10), "control channel subscribed"

    def _count(self, kind: str) -> None:
        self.received[kind] += 1

    def socket(self, eio_sid: str) -> str:
        self.manager.connect(eio_sid, "/")
        return self.manager.sid_from_eio_sid(eio_sid, "/")


class Written:
    """The local fan-out (LocalFanout.emit), replaced by a record of (manager, event, data)."""

    def __init__(self) -> None:
        self.items: list[tuple[object, str, object, object]] = []
        self.lock = threading.Lock()

    def __call__(self, manager, event, data, namespace=None, room=None, **kwargs) -> None:
        with self.lock:
            self.items.append((manager, event, data, room))

    def of(self, worker: Worker) -> list[tuple[str, object]]:
        return [(e, d) for m, e, d, _ in list(self.items) if m is worker.manager]


@pytest.fixture
def written(monkeypatch) -> Written:
    w = Written()
    monkeypatch.setattr(
        "chat.cluster.fanout.LocalFanout.emit",
        lambda manager, event, data, namespace=None, room=None, **kw: w(
            manager, event, data, namespace, room
        ),
    )
    return w


@pytest.fixture
def workers(redis_server):
    started: list[Worker] = []

    def start(**kwargs) -> Worker:
        worker = Worker(redis_server.url, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.manager.close()


def shard_subscribers(url: str, channel: str) -> int:
    return redis.Redis.from_url(url).execute_command("PUBSUB", "SHARDNUMSUB", channel)[1]


def test_upstream_emit_envelope_is_the_one_pubsub_manager_publishes():
    # ShardedRedisManager.emit builds PubSubManager.emit's envelope itself, to PUBLISH it
    # before the local fan-out. Tested on python-socketio 5.18.1; fails the day it changes.
    assert importlib.metadata.version("python-socketio") == "5.18.1"

    class Capture(PubSubManager):
        def __init__(self) -> None:
            super().__init__()
            self.published: list[dict] = []

        def _handle_emit(self, message):
            pass

        def _publish(self, data):
            self.published.append(data)

    upstream = Capture()
    upstream.emit("message", {"text": "hi"}, namespace="/", room="room:a", skip_sid="s1")
    ours = ShardedRedisManager.__new__(ShardedRedisManager)
    ours.host_id = upstream.host_id
    ours._fresh_rooms = {}
    sent: list[dict] = []
    ours._send = sent.append
    ours._publish = sent.append
    ours._confirm = lambda *a: None
    ours.server = SimpleNamespace(logger=logging.getLogger("test"))
    from chat.cluster.fanout import LocalFanout

    original = LocalFanout.emit  # the local fan-out, not under test here
    LocalFanout.emit = lambda *a, **k: None  # type: ignore[method-assign]
    try:
        ours.emit("message", {"text": "hi"}, namespace="/", room="room:a", skip_sid="s1")
    finally:
        LocalFanout.emit = original  # type: ignore[method-assign]
    assert sent[0] == upstream.published[0]


def test_upstream_socketio_manager_keeps_rooms_by_namespace_then_room_with_their_sids():
    # ShardedRedisManager._maintain gives up a room's channel once
    # `rooms.get(namespace, {}).get(room)` is empty for every namespace. Tested on
    # python-socketio 5.18.1; fails the day Manager.rooms changes shape.
    manager = socketio.Manager()
    socketio.Server(client_manager=manager, async_mode="threading")
    manager.initialize()
    sid = manager.connect("eio-1", "/")
    manager.enter_room(sid, "/", "room:a")
    assert sid in manager.rooms["/"]["room:a"]
    manager.leave_room(sid, "/", "room:a")
    assert not manager.rooms.get("/", {}).get("room:a")


def test_an_untested_python_socketio_is_refused_before_the_manager_is_built(monkeypatch):
    from chat.transport import upstream

    monkeypatch.setattr(upstream, "version", lambda name: "6.0.0")
    with pytest.raises(upstream.UntestedUpstream) as refused:
        ShardedRedisManager("redis://127.0.0.1:1/0")
    assert str(refused.value).startswith(
        "cluster/mq.ShardedRedisManager (PubSubManager's emit envelope, Manager.rooms) relies "
        "on python-socketio internals tested on 5.18 up to (not including) 6.0; 6.0.0 is "
        "installed"
    )


def test_upstream_pubsub_listen_stays_blocked_on_a_quiet_channel_despite_socket_timeout(
    redis_server,
):
    # The finding the links' PING deadline answers (redis-py 8.1.0): a listener relying on
    # socket_timeout to notice a dead connection may never notice. When this fails,
    # PubSub.listen() honours socket_timeout.
    assert redis.__version__ == "8.1.0"
    client = redis.Redis.from_url(redis_server.url, socket_timeout=1.0)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("quiet")
    outcome: list[object] = []

    def listen() -> None:
        try:
            outcome.append(next(pubsub.listen())["data"])
        except Exception as exc:
            outcome.append(exc)

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    reader.join(timeout=4.0)
    blocked = reader.is_alive()
    redis.Redis.from_url(redis_server.url).publish("quiet", "marker")
    reader.join(timeout=10)
    assert blocked, "listen() returned or raised within 4 s"
    assert outcome == [b"marker"]


def test_a_room_emit_reaches_only_the_workers_with_a_local_member(workers, written):
    a, b, c = workers(), workers(), workers()
    b.manager.enter_room(b.socket("e1"), "/", "room:b-only")
    c.manager.enter_room(c.socket("e2"), "/", "room:c-only")
    for i in range(3):
        a.manager.emit("message", {"n": i}, room="room:b-only")
    a.manager.emit("message", {"n": 9}, room="room:c-only")
    a.manager.emit("message", {"n": 0}, room="room:nobody")
    wait_for(lambda: b.received["room"] == 3, 10, "b's three")
    wait_for(lambda: c.received["room"] == 1, 10, "c's one")
    # A marker on the control channel, heard by all, closes the window for stray room emits.
    a.manager.emit("marker", {}, room=None)
    for w in (a, b, c):
        wait_for(lambda w=w: ("marker", {}) in written.of(w), 10, "the marker")
    assert (a.received["room"], b.received["room"], c.received["room"]) == (0, 3, 1)
    assert [d for e, d in written.of(b) if e == "message"] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [d for e, d in written.of(c) if e == "message"] == [{"n": 9}]
    assert (a.manager.subscriptions(), b.manager.subscriptions()) == (0, 1)


def test_the_first_local_socket_returns_from_enter_room_subscribed(workers, redis_server):
    a = workers()
    channel = room_channel("room:new")
    assert shard_subscribers(redis_server.url, channel) == 0
    a.manager.enter_room(a.socket("e1"), "/", "room:new")
    # No wait: Redis has confirmed the SSUBSCRIBE before enter_room returned.
    assert shard_subscribers(redis_server.url, channel) == 1


def test_a_join_waits_for_the_confirmation_and_its_room_is_resent_when_it_comes_late(
    workers, redis_server
):
    a = workers()
    sid = a.socket("e1")
    redis_server.pause()  # the SSUBSCRIBE is written, the confirmation does not come
    try:
        started = time.monotonic()
        a.manager.enter_room(sid, "/", "room:late")
        waited = time.monotonic() - started
    finally:
        redis_server.resume()
    assert waited >= mq.SUBSCRIBE_WAIT_SECONDS  # it went on only after the bounded wait
    sub = a.manager.subs[room_channel("room:late")]
    assert sub.confirmed.wait(15)
    # Whatever was published meanwhile is shown by the room's newest message, re-sent.
    # Either is right: the late confirmation re-sends this room, but a heartbeat missed while
    # Redis was paused may have scheduled the re-send of every room (None) first.
    wait_for(lambda: any(r is None or "room:late" in r for r in a.resumed), 10, "a re-send")


def test_sid_targeted_emits_go_on_the_control_channel(workers, written):
    a, b = workers(), workers()
    sid = b.socket("e1")
    a.manager.emit("session", {"user": "ann"}, room=sid)
    wait_for(lambda: ("session", {"user": "ann"}) in written.of(b), 10, "the session event")
    # The control channel also carries every worker's heartbeats, so its count is at least
    # the session event's one; the room channels carried nothing.
    assert b.received["room"] == 0 and b.received["control"] >= 1


def test_a_socket_put_in_a_room_by_another_worker_gets_the_rooms_next_emit_once(workers, written):
    # The DM notices: worker A puts B's socket into a room over the control channel and emits
    # to the room at once, before B can have subscribed its channel.
    a, b = workers(), workers()
    sid = b.socket("e1")
    handle_enter_room = b.manager._handle_enter_room

    def busy_hub(message: dict) -> None:  # B is busy: A's emits are out before B subscribes
        time.sleep(0.2)
        handle_enter_room(message)

    b.manager._handle_enter_room = busy_hub
    for n in range(5):
        room = f"notify:dm-{n}:bob"
        a.manager.enter_room(sid, "/", room)
        a.manager.emit("room", {"n": n}, room=room)
    wait_for(lambda: b.manager.subscriptions() == 5, 10, "b holding the five channels")
    a.manager.emit("room", {"n": "later"}, room="notify:dm-0:bob")
    wait_for(lambda: ("room", {"n": "later"}) in written.of(b), 10, "the later emit")
    assert written.of(b) == [("room", {"n": n}) for n in [0, 1, 2, 3, 4, "later"]]


def test_an_emit_to_a_session_of_this_worker_does_not_travel_the_queue(
    workers, written, redis_server
):
    a = workers()
    spy = redis.Redis.from_url(redis_server.url).pubsub(ignore_subscribe_messages=True)
    spy.ssubscribe(a.manager.channel)
    spy.get_sharded_message(timeout=2)
    sid = a.socket("e1")
    a.manager.emit("session", {"user": "ann"}, room=sid)
    assert written.of(a) == [("session", {"user": "ann"})]
    a.manager.emit("marker", {}, room="some-remote-sid")  # published: closes the window
    heard = spy.get_sharded_message(timeout=5)
    assert json.loads(heard["data"])["event"] == "marker"


def test_a_room_that_empties_keeps_its_channel_for_the_delay_then_gives_it_up(
    workers, redis_server
):
    a = workers(unsubscribe_delay=1.0)
    channel = room_channel("room:brief")
    sid = a.socket("e1")
    a.manager.enter_room(sid, "/", "room:brief")
    a.manager.leave_room(sid, "/", "room:brief")
    a.manager.enter_room(sid, "/", "room:brief")  # refilled within the delay: kept
    a.manager.leave_room(sid, "/", "room:brief")
    assert shard_subscribers(redis_server.url, channel) == 1
    wait_for(lambda: shard_subscribers(redis_server.url, channel) == 0, 10, "unsubscribed")
    assert a.manager.subscriptions() == 0
    a.manager.enter_room(sid, "/", "room:brief")  # and taken again on the next join
    assert shard_subscribers(redis_server.url, channel) == 1


def test_other_workers_hear_an_emit_before_its_own_sockets_are_written(
    workers, redis_server, monkeypatch
):
    a = workers()
    heard = redis.Redis.from_url(redis_server.url).pubsub(ignore_subscribe_messages=True)
    heard.ssubscribe(room_channel("room:general"))
    heard.get_sharded_message(timeout=2)
    local: list[tuple[str, bool]] = []

    def write(manager, event, *args, **kwargs) -> None:
        # Waits: had the PUBLISH not been sent before this write, it could not arrive during
        # it (the emitting thread is here), and the wait would end empty.
        local.append((event, heard.get_sharded_message(timeout=2) is not None))

    monkeypatch.setattr("socketio.manager.Manager.emit", write)
    a.manager.emit("message", {"text": "hi"}, room="room:general", namespace="/")
    a.manager.emit("typing", {"user": "ann"}, room="room:general", namespace="/")
    assert local == [("message", True), ("typing", True)]


def test_with_redis_gone_an_emit_still_reaches_its_own_sockets(workers, redis_server, written):
    a = workers()
    redis_server.stop()
    started = time.monotonic()
    a.manager.emit("message", {"text": "hi"}, room="room:general", namespace="/")
    assert written.of(a) == [("message", {"text": "hi"})]
    assert time.monotonic() - started < 2 * mq.PUBLISH_TIMEOUT_SECONDS + 2


def test_a_burst_of_publishes_waits_for_connections_instead_of_dropping_emits(
    workers, redis_server
):
    a = workers()
    heard = redis.Redis.from_url(redis_server.url).pubsub(ignore_subscribe_messages=True)
    heard.ssubscribe(a.manager.channel)
    heard.get_sharded_message(timeout=2)
    callers = 300
    start = threading.Barrier(callers)

    def publish(i: int) -> None:
        start.wait(timeout=30)
        a.manager._publish({"method": "test", "n": i})

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    received = set()
    deadline = time.monotonic() + 20
    while len(received) < callers and time.monotonic() < deadline:
        message = heard.get_sharded_message(timeout=0.5)
        if message is not None:
            data = json.loads(message["data"])
            if data.get("method") == "test":
                received.add(data["n"])
    assert received == set(range(callers))


# -- the numbered heartbeat: a missed beat means emits may be lost; a late beat does not --


def hear_own_beat(worker: Worker, n: int) -> None:
    wait_for(lambda: worker.manager.last_beat_heard == n, 10, f"beat {n} heard")


def test_a_late_beat_is_no_sign_of_loss(workers):
    a = workers()
    a.manager.beat()
    hear_own_beat(a, 1)
    # The hub was busy: the next beat is heard 30 s after the last one, but none is missing.
    a.manager.last_heard = time.time() - 30
    a.manager.beat()
    hear_own_beat(a, 2)
    assert a.resumed == []


def test_a_beat_that_could_not_be_published_counts_as_missed(workers):
    a = workers()
    a.manager.beat()
    hear_own_beat(a, 1)
    a.manager.beats_sent += 1  # beat 2 was attempted while Redis refused it
    a.manager.beat()
    hear_own_beat(a, 3)
    wait_for(lambda: a.resumed == [None], 10, "a re-send of every room")


def test_beats_before_the_listener_first_subscribed_are_no_loss(workers):
    a = workers()
    a.manager.beats_sent = 7  # a worker that beat before its listener first heard one
    a.manager.beat()
    hear_own_beat(a, 8)
    a.manager.beat()
    hear_own_beat(a, 9)
    assert a.resumed == []


def test_the_publish_path_fails_fast_on_a_refused_connection(workers):
    a = workers()
    a.manager.topology = mq.Topology(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    a.manager.beat()  # logged, not raised
    assert time.monotonic() - started < 2 * mq.PUBLISH_TIMEOUT_SECONDS + 2


# -- every link's liveness: its own PINGs, not the socket timeout -----------------------


def test_a_killed_pubsub_connection_is_reopened_and_its_rooms_resent(workers, redis_server):
    a, b = workers(), workers()
    sid = b.socket("e1")
    b.manager.enter_room(sid, "/", "room:k")
    killed_at = time.monotonic()
    redis.Redis.from_url(redis_server.url).execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    wait_for(lambda: b.resumed, 10, "b's re-send after its link came back")
    back_after = time.monotonic() - killed_at
    # The control channel shares the one Redis's link, so every room is re-sent (None).
    assert b.resumed[0] is None
    assert shard_subscribers(redis_server.url, room_channel("room:k")) == 1
    a.manager.emit("message", {"n": 1}, room="room:k")
    wait_for(lambda: b.received["room"] == 1, 10, "live delivery again")
    assert back_after < 5.0


def test_a_frozen_redis_is_noticed_by_the_links_within_the_deadline(workers, redis_server):
    a = workers()
    assert all(a.manager.links_alive().values())
    redis_server.pause()
    frozen_at = time.monotonic()
    try:
        wait_for(lambda: not all(a.manager.links_alive().values()), 10, "a dead link")
        noticed_after = time.monotonic() - frozen_at
    finally:
        redis_server.resume()
    wait_for(lambda: all(a.manager.links_alive().values()), 15, "the link back")
    print(f"\nfrozen redis noticed after {noticed_after:.2f} s")
    assert noticed_after < mq.LINK_DEADLINE_SECONDS + 3  # a liveness bound on a busy machine
