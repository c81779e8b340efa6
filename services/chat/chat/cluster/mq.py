"""The Socket.IO message queue: per-room channels on Redis sharded pub/sub, one control channel.

python-socketio's `PubSubManager` turns every cross-worker action into a dict and leaves the
transport to `_publish` and `_listen`, its documented extension point; this is that
transport, on one Redis or on a Redis Cluster (`topology.py`):

- An emit to a Socket.IO room whose name has a ':' (the chat's `room:<name>`, the direct
  messages' `user:<name>`; session ids never contain one) goes to that room's own channel
  with SPUBLISH. A worker SSUBSCRIBEs a room's channel when the room gets its first local
  socket, and `enter_room` returns only once Redis has confirmed the subscription, so a
  message published after the join's history read is heard live. The channel is given up
  UNSUBSCRIBE_DELAY seconds after the room has no local socket any more (a room that empties
  and refills meanwhile costs nothing). A worker therefore receives the emits of the rooms it
  has members in, and no others.
- Everything else (emits to a session id or to everyone, callbacks, disconnects, enter/leave
  of a remote socket, the numbered heartbeat) goes on the control channel every worker hears.
  A worker that receives a remote enter_room for one of its sockets subscribes the room's
  channel then; until it surely has (FRESH_REMOTE_ROOM_SECONDS), the room's emits from the
  worker that sent the enter_room go on the control channel too, and receivers deliver
  whichever copy comes first (by the emit's id).

Every pub/sub connection ("link", one per Redis node with channels of ours) is read by its
own task and PINGed every LINK_PING_SECONDS; a link that has read nothing for
LINK_DEADLINE_SECONDS is dropped and opened again. The deadline does not rely on the socket
timeout: redis-py's `PubSub.listen()` stays blocked on a quiet channel whatever its
`socket_timeout` (test_upstream_* in tests/test_mq.py). After a link comes back, and after a
room's channel moved to another node (a slot migrated: Redis unsubscribes us; or MOVED), the
rooms are subscribed again and, once Redis confirms, `on_resumed` is called with them: the
worker re-sends each one's newest message to its own sockets, and clients catch up by
`join {since}` (docs/RELIABILITY.md).

PUBLISH before the local fan-out: the other workers' members do not wait for this worker's
whole fan-out. `emit` writes the SPUBLISH, writes the local sockets, and only then reads
Redis's reply.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import redis
from socketio.packet import Packet
from socketio.pubsub_manager import PubSubManager

from ..transport import upstream
from .fanout import LocalFanout
from .topology import Topology

log = logging.getLogger(__name__)

# Beats every 2 s; three missed beats in a row mean the listener is deaf, not just busy.
HEARTBEAT_INTERVAL_SECONDS = 2.0
DEAF_AFTER_SECONDS = 3 * HEARTBEAT_INTERVAL_SECONDS
# A link PINGs Redis this often and is judged dead after this long without reading anything
# (a PONG included): a frozen Redis or a black-holed connection is noticed within ~2 s.
LINK_PING_SECONDS = 0.5
LINK_DEADLINE_SECONDS = 2.0
# A reply that has started to arrive is complete within this; only a dead peer takes longer.
LINK_READ_TIMEOUT_SECONDS = 5.0
# Reconnect attempts back off from 0.25 s to this cap: python-socketio's own 60 s would leave
# a worker deaf for a minute after Redis is back; an attempt a second costs nothing.
LINK_RETRY_CAP_SECONDS = 1.0
# A join waits this long for Redis to confirm the room's subscription. Past it the join goes
# on (Redis is down: the worker still serves its own sockets) and the room's newest message
# is re-sent once the confirmation comes, so the joiner still sees the seq it missed.
SUBSCRIBE_WAIT_SECONDS = 2.0
# Publishing runs inside event handlers and is tried twice: a hung Redis may cost a handler
# twice this, never block it (the message is stored and acked regardless).
PUBLISH_TIMEOUT_SECONDS = 0.5
# After a publish failed (or went unconfirmed), best-effort emits (`best_effort_events`: the
# notices that ride along with a message, one per member) skip the queue for this long instead
# of each waiting out the timeout: a hung Redis held a handler 6.5 s for one message and its
# notices. Messages and heartbeats are always tried, so a lost message is still detected and
# caught up; a skipped notice is made good by the next one (it carries the room's state).
PUBLISH_PAUSE_SECONDS = 1.0
# After this worker put another worker's socket into a room (a cross-node enter_room, on
# the control channel), that worker may not hold the room's channel yet: for this long, the
# room's emits from here also go on the control channel, with an id receivers dedupe by.
# Above SUBSCRIBE_WAIT_SECONDS, so a subscription that takes that long is covered too.
FRESH_REMOTE_ROOM_SECONDS = 3.0
# A room's channel is kept this long after its last local socket left (a setting:
# MQ_UNSUBSCRIBE_DELAY_SECONDS).
DEFAULT_UNSUBSCRIBE_DELAY_SECONDS = 30.0
CHANNEL_PREFIX = "chat:mq:"


def is_room(room: Any) -> TypeGuard[str]:
    """Does an emit to `room` go to the room's own channel? (Names with a ':'; sids have none.)"""
    return isinstance(room, str) and ":" in room


def room_channel(room: str, prefix: str = CHANNEL_PREFIX) -> str:
    """The room's channel; the hash tag puts it in one cluster slot, chosen by the room alone."""
    return f"{prefix}{{{room}}}"


@dataclass
class Subscription:
    """A channel this worker wants to hear: a room's, or the control channel (room None)."""

    channel: str
    room: str | None
    node: str
    confirmed: Any  # an Event of the server's async mode
    late: bool = False  # a join stopped waiting for the confirmation: re-send when it comes
    resend: bool = False  # re-subscribed after a loss: re-send when confirmed
    empty_since: float | None = None


@dataclass
class _Link:
    """One pub/sub connection to one Redis node, read by its own task."""

    node: str
    subs: dict[str, Subscription] = field(default_factory=dict)
    conn: Any = None
    unsubscribing: dict[str, int] = field(default_factory=dict)  # SUNSUBSCRIBEs not yet answered
    last_read: float = 0.0
    running: bool = True
    reconnects: int = 0
    send_lock: Any = field(default_factory=threading.Lock)


class ShardedRedisManager(PubSubManager, LocalFanout):
    """python-socketio's pub/sub manager on Redis sharded pub/sub (one Redis or a Cluster).

    Local delivery, its own emits' and those heard from the queue, is LocalFanout's (after
    PubSubManager in the method order: PubSubManager's `super().emit` reaches it).
    """

    name = "redis-sharded"

    # Events whose emits may skip the queue while publishing fails (the app names them).
    best_effort_events: frozenset[str] = frozenset()
    _publish_paused_until = 0.0  # see PUBLISH_PAUSE_SECONDS

    def __init__(
        self,
        url: str,
        *,
        unsubscribe_delay: float = DEFAULT_UNSUBSCRIBE_DELAY_SECONDS,
        prefix: str = CHANNEL_PREFIX,
        on_received: Callable[[str], None] | None = None,
        logger: Any = None,
    ) -> None:
        # Beyond the documented _publish/_listen: emit builds PubSubManager's envelope itself
        # and _maintain reads Manager.rooms (namespace -> room -> sids). Canaries in
        # tests/test_mq.py and tests/test_upstream_pubsub_rooms.py (the reach table:
        # chat/transport/__init__.py).
        upstream.require(
            "python-socketio",
            "cluster/mq.ShardedRedisManager (PubSubManager's emit envelope, Manager.rooms)",
        )
        super().__init__(channel=prefix + "control", logger=logger)
        self.redis_url = url
        self.prefix = prefix
        self.unsubscribe_delay = unsubscribe_delay
        self.topology = Topology(url, socket_timeout=PUBLISH_TIMEOUT_SECONDS)
        self.subs: dict[str, Subscription] = {}
        self.links: dict[str, _Link] = {}
        self._lock = threading.Lock()
        self._incoming: Any = None
        self._started = False
        self._to_resend: set[str] = set()
        self._resend_all = False
        self._resend_scheduled = False
        self._fresh_rooms: dict[str, float] = {}  # room -> until when its emits go twice
        self._seen: dict[str, float] = {}  # ids of emits sent twice -> until when remembered
        self._sent_twice = 0
        # Called with "room" or "control" for each message a link reads (the metrics).
        self.on_received = on_received
        # Called (in a background task) with the rooms whose emits may have been missed
        # (None: every room), and the seconds since the last own beat was heard.
        self.on_resumed: Callable[[set[str] | None, float], None] | None = None
        self.last_heard: float | None = None
        self.started = time.time()
        self.beats_sent = 0  # numbered per attempt, so a beat that failed to publish is a gap
        self.last_beat_heard = 0

    # -- life cycle --------------------------------------------------------------------

    def initialize(self) -> None:
        """Start listening; idempotent, so a worker can start it before its first client."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self._incoming = self.server.eio.create_queue()
        self._want(self.channel, None, wait=False)
        super().initialize()  # starts python-socketio's dispatch loop over _listen()
        self.server.start_background_task(self._maintain)

    def close(self) -> None:
        """Stop every link (tests; a worker process just exits)."""
        self._started = False
        for link in list(self.links.values()):
            link.running = False
            self._drop(link)

    # -- publishing --------------------------------------------------------------------

    def emit(
        self,
        event,
        data,
        namespace=None,
        room=None,
        skip_sid=None,
        callback=None,
        to=None,
        **kwargs,
    ):
        """PubSubManager.emit, with the PUBLISH written before the local fan-out.

        Emits with a callback or binary data keep python-socketio's own path (local first).
        """
        room = to or room
        namespace = namespace or "/"
        if (
            not kwargs.get("ignore_queue")
            and isinstance(room, str)
            and not is_room(room)
            and self.is_connected(room, namespace)
        ):
            # To a session of this worker (the `session` event of every connect): nobody else
            # can deliver it, so it need not cost every worker a control message.
            kwargs["ignore_queue"] = True
        payload = list(data) if isinstance(data, tuple) else [data]
        if kwargs.get("ignore_queue") or callback is not None or Packet.data_is_binary(payload):
            return super().emit(
                event,
                data,
                namespace=namespace,
                room=room,
                skip_sid=skip_sid,
                callback=callback,
                **kwargs,
            )
        if event in self.best_effort_events and self._publish_paused():
            return super().emit(
                event, data, namespace=namespace, room=room, skip_sid=skip_sid, ignore_queue=True
            )
        # The envelope PubSubManager.emit builds (test_upstream_emit_envelope checks it).
        message = {
            "method": "emit",
            "event": event,
            "data": payload,
            "binary": False,
            "namespace": namespace,
            "room": room,
            "skip_sid": skip_sid,
            "callback": None,
            "host_id": self.host_id,
        }
        twice = self._mark_twice(message)
        pending = self._send(message)
        try:
            super().emit(
                event, data, namespace=namespace, room=room, skip_sid=skip_sid, ignore_queue=True
            )
        finally:
            if pending is None:
                self._publish(message)  # the send failed: the synchronous path tries again
            else:
                self._confirm(message, *pending)
            if twice:
                self._publish(message, control=True)

    def _publish_paused(self) -> bool:
        return time.monotonic() < self._publish_paused_until

    def _pause_publishing(self) -> None:
        self._publish_paused_until = time.monotonic() + PUBLISH_PAUSE_SECONDS

    def _publish(self, data: dict, control: bool = False) -> None:
        """Publish one envelope on its channel; tried twice, then logged (never raised)."""
        twice = not control and "id" not in data and self._mark_twice(data)
        channel, payload = self._route(data)
        if control:
            channel = self.channel
        for attempt in (1, 2):
            try:
                self.topology.publisher(channel).execute_command("SPUBLISH", channel, payload)
                return
            except redis.RedisError as exc:
                if isinstance(exc, redis.exceptions.MovedError):
                    self.topology.moved(exc.slot_id, f"{exc.host}:{exc.port}")
                elif attempt == 1:
                    self._refresh_topology()
                if attempt == 2:
                    log.warning("message queue publish failed (%s: %s)", type(exc).__name__, exc)
                    self._pause_publishing()
        if twice:
            self._publish(data, control=True)

    def _mark_twice(self, message: dict) -> bool:
        """Should this room emit go on the control channel too? (Then it gets an id.)"""
        room = message.get("room")
        if message.get("method") != "emit" or not is_room(room):
            return False
        until = self._fresh_rooms.get(room)
        if until is None or until < time.monotonic():
            return False
        self._sent_twice += 1
        message["id"] = f"{self.host_id}:{self._sent_twice}"
        return True

    def beat(self) -> None:
        """Publish the next numbered heartbeat on the control channel."""
        self.beats_sent += 1
        self._publish({"method": "heartbeat", "host_id": self.host_id, "n": self.beats_sent})

    def _route(self, data: dict) -> tuple[str, str]:
        room = data.get("room") if data.get("method") == "emit" else None
        channel = room_channel(room, self.prefix) if is_room(room) else self.channel
        return channel, self.json.dumps(data)

    def _send(self, message: dict) -> tuple[Any, Any] | None:
        """Write the SPUBLISH without reading the reply; None if it could not be written."""
        channel, payload = self._route(message)
        client = conn = None
        try:
            client = self.topology.publisher(channel)
            conn = client.connection_pool.get_connection()
            conn.send_command("SPUBLISH", channel, payload)
            return client, conn
        except Exception:
            if client is not None and conn is not None:
                conn.disconnect()
                client.connection_pool.release(conn)
            return None

    def _confirm(self, message: dict, client: Any, conn: Any) -> None:
        try:
            conn.read_response()
        except redis.exceptions.MovedError as exc:
            # Refused, so not published: the slot's new owner gets it.
            self.topology.moved(exc.slot_id, f"{exc.host}:{exc.port}")
            self._publish(message)
        except Exception as exc:
            # Sent, so maybe delivered: not sent again (that could duplicate it). If Redis
            # lost it, the link's reconnect or the heartbeat's gap makes workers re-send.
            conn.disconnect()
            log.warning("message queue publish unconfirmed: %s", exc)
            self._pause_publishing()
        finally:
            client.connection_pool.release(conn)

    # -- subscriptions -----------------------------------------------------------------

    def enter_room(self, sid, namespace, room, eio_sid=None):
        """Add a socket to a room; a room's first local socket waits for its channel."""
        local = self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace)
        if is_room(room) and not local:  # published for the worker that holds the socket
            self._fresh_rooms[room] = time.monotonic() + FRESH_REMOTE_ROOM_SECONDS
        result = super().enter_room(sid, namespace, room, eio_sid=eio_sid)
        if is_room(room) and self._started and local:
            self._want(room_channel(room, self.prefix), room, wait=True)
        return result

    def subscriptions(self) -> int:
        """Room channels this worker holds (subscribed or being subscribed)."""
        return sum(1 for s in self.subs.values() if s.room is not None)

    def _want(self, channel: str, room: str | None, wait: bool) -> None:
        with self._lock:
            sub = self.subs.get(channel)
            if sub is None:
                sub = Subscription(
                    channel, room, self.topology.node_of(channel), self.server.eio.create_event()
                )
                self.subs[channel] = sub
                link = self._link(sub.node)
                link.subs[channel] = sub
            else:
                link = self.links[sub.node]
            sub.empty_since = None
        if not sub.confirmed.is_set():
            self._send_on(link, "SSUBSCRIBE", channel)
            if wait and not sub.confirmed.wait(SUBSCRIBE_WAIT_SECONDS):
                sub.late = True
                log.warning("message queue: no confirmation for %s yet; going on", channel)

    def _link(self, node: str) -> _Link:
        link = self.links.get(node)
        if link is None or not link.running:
            link = self.links[node] = _Link(node)
            self.server.start_background_task(self._run_link, link)
        return link

    def _send_on(self, link: _Link, *command: str) -> None:
        """Write a command on a link's connection; if it is down, its reconnect sends it."""
        try:
            with link.send_lock:
                # Checked under the lock: redis-py would quietly open a new socket on a
                # connection the reader has dropped, a subscriber nobody reads.
                conn = link.conn
                if conn is None:
                    return
                conn.send_command(*command, check_health=False)
        except Exception as exc:  # the reader notices the broken connection too
            log.info("message queue link %s: %s not sent (%s)", link.node, command[0], exc)

    def _maintain(self) -> None:
        """Give up the channels of rooms without local sockets for UNSUBSCRIBE_DELAY."""
        while self._started:
            self.server.sleep(min(1.0, max(self.unsubscribe_delay / 2, 0.05)))
            now = time.monotonic()
            for table in (self._fresh_rooms, self._seen):
                for key, until in list(table.items()):
                    if until < now:
                        table.pop(key, None)
            for sub in list(self.subs.values()):
                if sub.room is None:
                    continue
                if any(self.rooms.get(ns, {}).get(sub.room) for ns in list(self.rooms)):
                    sub.empty_since = None
                elif sub.empty_since is None:
                    sub.empty_since = now
                elif now - sub.empty_since >= self.unsubscribe_delay:
                    self._give_up(sub)

    def _give_up(self, sub: Subscription) -> None:
        with self._lock:
            if self.subs.get(sub.channel) is not sub:
                return
            del self.subs[sub.channel]
            link = self.links.get(sub.node)
            if link is None or link.subs.pop(sub.channel, None) is None:
                return
            link.unsubscribing[sub.channel] = link.unsubscribing.get(sub.channel, 0) + 1
        self._send_on(link, "SUNSUBSCRIBE", sub.channel)

    # -- listening ---------------------------------------------------------------------

    def _listen(self) -> Iterator[dict]:
        """The messages every link reads, decoded, for PubSubManager's dispatch loop."""
        while True:
            kind, payload = self._incoming.get()
            try:
                data = self.json.loads(payload)
            except ValueError:
                log.warning("message queue: undecodable message skipped")
                continue
            if not isinstance(data, dict):
                continue
            method = data.get("method")
            emit_id = data.get("id")
            if emit_id is not None:  # sent on the room's channel and on the control channel
                if emit_id in self._seen:
                    continue
                self._seen[emit_id] = time.monotonic() + 2 * FRESH_REMOTE_ROOM_SECONDS
            if method == "heartbeat":
                if data.get("host_id") == self.host_id:
                    self._heard_own_beat(data.get("n"))
                continue
            yield data
            # A remote enter of one of our sockets (PubSubManager handled it as it was
            # yielded): the room may be new here.
            if (
                method == "enter_room"
                and is_room(data.get("room"))
                and self.is_connected(data.get("sid"), data.get("namespace") or "/")
            ):
                self._want(room_channel(data["room"], self.prefix), data["room"], wait=False)

    def _run_link(self, link: _Link) -> None:
        retry = 0.25
        first = True
        while link.running and self._started:
            try:
                self._connect(link, resend=not first)
                first = False
                retry = 0.25
                self._read(link)
            except Exception as exc:
                if not link.running:
                    break
                log.warning(
                    "message queue link %s lost (%s: %s); reconnecting",
                    link.node,
                    type(exc).__name__,
                    exc,
                )
            self._drop(link)
            if not link.running or not self._started:
                break
            if not first:
                link.reconnects += 1
            self.server.sleep(retry)
            retry = min(retry * 2, LINK_RETRY_CAP_SECONDS)
            self._refresh_topology()  # a failover or a resharding may have moved our channels
            with self._lock:
                if not link.subs:  # nothing of ours lives on this node any more
                    link.running = False
                    if self.links.get(link.node) is link:
                        del self.links[link.node]
        self._drop(link)

    def _connect(self, link: _Link, resend: bool) -> None:
        conn = self.topology.listen_connection(link.node, LINK_READ_TIMEOUT_SECONDS)
        conn.connect()
        with self._lock:
            link.conn = conn
            link.unsubscribing.clear()
            subs = list(link.subs.values())
            for sub in subs:
                sub.confirmed.clear()
                sub.resend = sub.resend or resend
        link.last_read = time.monotonic()
        with link.send_lock:
            for sub in subs:
                conn.send_command("SSUBSCRIBE", sub.channel, check_health=False)

    def _drop(self, link: _Link) -> None:
        conn, link.conn = link.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()

    def _read(self, link: _Link) -> None:
        conn = link.conn
        next_ping = time.monotonic() + LINK_PING_SECONDS
        while link.running and conn is link.conn:
            if conn.can_read(timeout=LINK_PING_SECONDS):
                try:
                    reply = conn.read_response()
                except redis.ResponseError as exc:  # an error reply (MOVED...); the link is fine
                    reply = exc
                link.last_read = time.monotonic()
                self._on_reply(link, reply)
                continue
            now = time.monotonic()
            if now - link.last_read > LINK_DEADLINE_SECONDS:
                raise redis.ConnectionError(
                    f"nothing read for {now - link.last_read:.1f} s (PINGs unanswered)"
                )
            if now >= next_ping:
                next_ping = now + LINK_PING_SECONDS
                with link.send_lock:
                    conn.send_command("PING", check_health=False)

    def _on_reply(self, link: _Link, reply: Any) -> None:
        if isinstance(reply, redis.exceptions.MovedError):  # SSUBSCRIBE to a former owner
            self.topology.moved(reply.slot_id, f"{reply.host}:{reply.port}")
            self._reroute(refresh=False)
            return
        if isinstance(reply, redis.ResponseError):  # ASK (a slot being migrated), TRYAGAIN...
            log.warning("message queue link %s: %s", link.node, reply)
            self.server.start_background_task(self._reroute_later)
            return
        if not isinstance(reply, list) or len(reply) < 2:
            return  # +PONG before the first subscription
        kind = _text(reply[0])
        if kind == "smessage":
            channel = _text(reply[1])
            label = "control" if channel == self.channel else "room"
            if self.on_received is not None:
                self.on_received(label)
            self._incoming.put((label, reply[2]))
        elif kind == "ssubscribe":
            self._on_confirmed(link, _text(reply[1]))
        elif kind == "sunsubscribe":
            channel = _text(reply[1])
            pending = link.unsubscribing.get(channel, 0)
            if pending:
                if pending == 1:
                    del link.unsubscribing[channel]
                else:
                    link.unsubscribing[channel] = pending - 1
            elif channel in link.subs:
                # Not asked for: Redis moved the channel's slot to another node.
                log.warning("message queue: %s left %s (slot moved)", channel, link.node)
                link.subs[channel].confirmed.clear()
                self._reroute(moved=channel)

    def _on_confirmed(self, link: _Link, channel: str) -> None:
        sub = link.subs.get(channel)
        if sub is None or link.unsubscribing.get(channel):
            return  # confirms a subscription given up since; its SUNSUBSCRIBE follows
        sub.confirmed.set()
        if sub.resend or sub.late:
            sub.resend = sub.late = False
            self._schedule_resend(sub.room)

    def _refresh_topology(self) -> None:
        try:
            self.topology.refresh()
        except Exception as exc:
            log.info("message queue: cluster topology not refreshed (%s)", exc)

    def _reroute_later(self) -> None:
        self.server.sleep(0.2)
        self._reroute()

    def _reroute(self, moved: str | None = None, refresh: bool = True) -> None:
        """Move each channel to the node that owns its slot now (after MOVED or a migration).

        Channels not confirmed yet (or `moved`) are subscribed again where they belong.
        """
        if refresh:
            self._refresh_topology()
        moves: list[tuple[Subscription, _Link]] = []
        with self._lock:
            for sub in list(self.subs.values()):
                node = self.topology.node_of(sub.channel)
                if node == sub.node and sub.channel != moved and sub.confirmed.is_set():
                    continue
                old = self.links.get(sub.node)
                if old is not None and node != sub.node:
                    old.subs.pop(sub.channel, None)
                sub.node = node
                sub.confirmed.clear()
                sub.resend = True
                new = self._link(node)
                new.subs[sub.channel] = sub
                moves.append((sub, new))
        for sub, new in moves:
            self._send_on(new, "SSUBSCRIBE", sub.channel)

    # -- heartbeat and re-sends --------------------------------------------------------

    def _heard_own_beat(self, number: Any) -> None:
        self.last_heard = time.time()
        # Beats published before the listener first subscribed are no loss: nobody was here.
        missed = isinstance(number, int) and 0 < self.last_beat_heard < number - 1
        if isinstance(number, int):
            self.last_beat_heard = number
        if missed:
            self._schedule_resend(None)

    def _schedule_resend(self, room: str | None) -> None:
        """Re-send the newest message of `room` (None: of every room), once, soon."""
        if room is None:
            self._resend_all = True
        else:
            self._to_resend.add(room)
        if self._resend_scheduled or self.on_resumed is None:
            return
        self._resend_scheduled = True
        self.server.start_background_task(self._resend)

    def _resend(self) -> None:
        self.server.sleep(0.05)  # gathers the confirmations of one reconnect into one re-send
        self._resend_scheduled = False
        rooms: set[str] | None = None if self._resend_all else self._to_resend
        self._resend_all, self._to_resend = False, set()
        silence = time.time() - (self.last_heard or self.started)
        if self.on_resumed is not None:
            self.on_resumed(rooms, silence)

    def links_alive(self) -> dict[str, bool]:
        """Each link's node, and whether it read something within the deadline."""
        now = time.monotonic()
        return {
            node: link.conn is not None and now - link.last_read <= LINK_DEADLINE_SECONDS + 1
            for node, link in list(self.links.items())
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
