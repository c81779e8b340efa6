"""Is this worker still part of the cluster? Redis reachable, and hearing its own heartbeat.

A worker whose message-queue listener silently stops receiving (python-socketio issue 1581)
still serves HTTP and looks healthy, while none of the other workers' emits reach its
clients. Each worker therefore publishes a heartbeat through the message queue and checks
that its own listener hears it; /healthz fails when it has not for DEAF_AFTER_SECONDS.

The same heartbeat tells a worker when it may have missed emits (a Redis restart, a dropped
subscription): beats are numbered, and a beat heard after a gap in the numbers (a beat that
was never heard, or never published) or after the listener reconnected means emits may have
been lost too. The worker then re-sends each of its rooms' newest message to its own
sockets, so every client sees the seq it missed and catches up with `join {since}`
(docs/RELIABILITY.md). A beat that is merely late (a hub busy with fan-out publishes it late,
or a listener working through a backlog hears it late) is no sign of loss: Redis delivers a
subscriber's messages in order and drops none without dropping the connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import socketio as pysocketio
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import metrics
from .presence import Presence
from .shared_state import SharedState, StateUnavailable, redis_client

log = logging.getLogger(__name__)

# Beats every 2 s; three missed beats in a row mean the listener is deaf, not just busy.
HEARTBEAT_INTERVAL_SECONDS = 2.0
DEAF_AFTER_SECONDS = 3 * HEARTBEAT_INTERVAL_SECONDS
# Presence announcements are coalesced: a room of 2,000 joining at once sends ~1 list/s, not 2,000.
PRESENCE_FLUSH_SECONDS = 1.0
# A listener read that waits longer than this is on a dead connection: the worker's own beat
# arrives every HEARTBEAT_INTERVAL_SECONDS, so the listener reconnects instead of staying deaf.
LISTEN_TIMEOUT_SECONDS = DEAF_AFTER_SECONDS
# python-socketio backs the listener's reconnects off to 60 s, which would leave a worker deaf
# for up to a minute after Redis is back; a connect attempt every few seconds costs nothing.
LISTEN_RETRY_CAP_SECONDS = 4.0
# Publishing runs inside event handlers and python-socketio tries twice: a hung Redis may
# cost a handler twice this, never block it (the message is stored and acked regardless).
PUBLISH_TIMEOUT_SECONDS = 0.5


class HeartbeatRedisManager(pysocketio.RedisManager):
    """python-socketio's Redis manager, plus a heartbeat that travels the listener's path.

    The beat is published as a `callback` message: the one method the listener hands to
    this host even when it sent it (emits from the own host are skipped).
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.last_heard: float | None = None
        self.started = time.time()
        self.beats_sent = 0  # numbered per attempt, so a beat that failed to publish is a gap
        self.last_beat_heard = 0
        self.listener_reconnected = False
        # Called (on the listener's thread) with the seconds since the last beat heard, when
        # emits may have been missed.
        self.on_resumed: Callable[[float], None] | None = None
        self._held_local_emit: dict | None = None

    def beat(self) -> None:
        self.beats_sent += 1
        self._publish(
            {
                "method": "callback",
                "host_id": self.host_id,
                "heartbeat": time.time(),
                "n": self.beats_sent,
            }
        )

    # python-socketio's emit() writes to this worker's own sockets first and publishes after,
    # so every other worker's members waited for this worker's whole fan-out (a third of a
    # 1,000-member room) before their worker even heard of the message. Here the PUBLISH is
    # sent first, the own sockets are written while Redis delivers it to the others, and only
    # then is Redis's reply read: nobody waits for the other.

    def _handle_emit(self, message: dict) -> None:
        if message.get("host_id") == self.host_id:
            # Only emit() hands this host its own emits (the listener skips them), and it
            # calls _publish with the same message next, with no switch in between.
            self._held_local_emit = message
            return
        super()._handle_emit(message)

    def _publish(self, data: dict) -> Any:
        held, self._held_local_emit = self._held_local_emit, None
        if held is None or held is not data:
            if held is not None:  # not expected; a local emit is never dropped
                super()._handle_emit(held)
            return super()._publish(data)
        return self._publish_around_local_emit(data)

    def _publish_around_local_emit(self, message: dict) -> None:
        sent = False
        connection = None
        try:
            if not self.connected:
                self._redis_connect()
            connection = self.redis.connection_pool.get_connection()
            connection.send_command("PUBLISH", self.channel, self.json.dumps(message))
            sent = True
        except Exception:
            if connection is not None:
                connection.disconnect()
        try:
            super()._handle_emit(message)
        finally:
            if connection is not None:
                if sent:
                    try:
                        connection.read_response()
                    except Exception as exc:
                        # Sent, so maybe delivered: not sent again (that could duplicate it).
                        # If Redis lost it, the heartbeat's gap makes workers re-send.
                        connection.disconnect()
                        log.warning("message queue publish unconfirmed: %s", exc)
                self.redis.connection_pool.release(connection)
        if not sent:  # python-socketio's own path: reconnect, try again, log if it fails
            super()._publish(message)

    def _handle_callback(self, message: dict) -> None:
        if "heartbeat" in message:
            if message.get("host_id") == self.host_id:
                self._heard_own_beat(message.get("n"))
            return
        super()._handle_callback(message)

    def _heard_own_beat(self, number: int | None) -> None:
        now = time.time()
        silence = now - (self.last_heard or self.started)
        self.last_heard = now
        # Beats published before the listener first subscribed are no loss: nobody was here.
        missed = isinstance(number, int) and 0 < self.last_beat_heard < number - 1
        if isinstance(number, int):
            self.last_beat_heard = number
        reconnected, self.listener_reconnected = self.listener_reconnected, False
        if (missed or reconnected) and self.on_resumed is not None:
            self.on_resumed(silence)

    def _redis_connect(self) -> None:
        """Two clients: the publisher with a short timeout, the listener with a longer one."""
        options = self.redis_options
        try:
            self.redis_options = {**options, "socket_timeout": LISTEN_TIMEOUT_SECONDS}
            super()._redis_connect()
            listener = self.pubsub
            # The publisher gets shared_state's client: a pool that makes a burst of
            # publishes wait for a free connection (up to the publish timeout) where
            # redis-py's own pool raises past 100, and python-socketio would drop the emit.
            # No retries inside redis-py (its default: 10, with backoff): python-socketio
            # already tries twice, reconnecting in between.
            publisher_options = {
                **options,
                "socket_timeout": PUBLISH_TIMEOUT_SECONDS,
                "retry": Retry(NoBackoff(), 0),
            }
            self.redis = redis_client(self.redis_url, **publisher_options)
            self.pubsub = listener
            self.connected = True
        finally:
            self.redis_options = options

    def _redis_listen_with_retries(self):
        """python-socketio's listen loop, with the backoff capped at LISTEN_RETRY_CAP_SECONDS."""
        retry_sleep = 1.0
        while True:
            try:
                self._redis_connect()
                self.pubsub.subscribe(self.channel)
                retry_sleep = 1.0
                yield from self.pubsub.listen()
            except Exception as exc:
                self.listener_reconnected = True
                log.warning(
                    "message queue listener lost Redis (%s: %s); retrying in %.0f s",
                    type(exc).__name__,
                    exc,
                    retry_sleep,
                )
                time.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, LISTEN_RETRY_CAP_SECONDS)


class Liveness:
    """Background duties of one worker and the health checks that watch them."""

    def __init__(
        self,
        socketio,
        presence: Presence,
        state: SharedState,
        manager: HeartbeatRedisManager | None,
        app=None,
    ) -> None:
        self.socketio, self.presence, self.state, self.manager = socketio, presence, state, manager
        self.app = app
        self.running = False
        self._next_presence_beat = 0.0
        if manager is not None:
            manager.on_resumed = self._on_resumed

    def start(self) -> None:
        """Start the loops; once per worker process, after the server exists."""
        if self.running:
            return
        self.running = True
        if self.manager is not None and not self.socketio.server.manager_initialized:
            # The listener normally starts with the first client; start it now so a fresh
            # worker can prove it hears the queue before anyone connects.
            self.socketio.server.manager_initialized = True
            self.manager.initialize()
        self.socketio.start_background_task(self._loop)

    def stop(self) -> None:
        self.running = False

    def _loop(self) -> None:
        next_beat = 0.0
        while self.running:
            now = time.time()
            try:
                if now >= next_beat:
                    next_beat = now + HEARTBEAT_INTERVAL_SECONDS
                    if self.manager is not None:
                        self.manager.beat()
                    if now >= self._next_presence_beat:
                        self._next_presence_beat = now + self.presence.ttl / 3
                        self.presence.heartbeat()
                self.flush_presence()
            except StateUnavailable as exc:  # expected during a Redis outage: one line, no trace
                log.warning("background duty skipped: %s", exc)
            except Exception:
                log.exception("background duty failed; retrying")
            self.socketio.sleep(PRESENCE_FLUSH_SECONDS)

    def _on_resumed(self, silence: float) -> None:
        log.warning(
            "message queue: own heartbeat missed or listener reconnected (%.1f s "
            "since the last one heard); re-sending each room's newest message to this "
            "worker's sockets",
            silence,
        )
        self.socketio.start_background_task(self.resend_newest)

    def resend_newest(self) -> None:
        """Push each local room's newest message to this worker's own sockets, once.

        Emits from other workers may have been lost while the queue was silent. A client
        that sees a seq beyond the last it has asks for the gap with `join {since}`; one
        that already has it drops the copy by seq. One message per room, not a replay.
        """
        from ..domain.messages import newest_in_rooms
        from ..realtime import publish

        rooms = {room for sock in list(self.presence.local.values()) for room in sock.rooms}
        if not rooms or self.app is None:
            return
        try:
            with self.app.app_context():
                newest = newest_in_rooms(sorted(rooms))
        except Exception as exc:  # the database may be down too; the next silence retries
            log.warning("could not re-send the newest messages: %s", exc)
            return
        for room, message in newest.items():
            publish.message_local(room, message)

    def flush_presence(self) -> None:
        from ..realtime import publish

        for room, users in self.presence.changes():
            publish.presence(room, users)

    def checks(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        if self.manager is None:
            return out
        try:
            out["redis"] = {"ok": self.state.ping()}
        except Exception as exc:
            out["redis"] = {"ok": False, "error": type(exc).__name__}
        age = self.heartbeat_age()
        grace = time.time() - self.manager.started < DEAF_AFTER_SECONDS
        out["message_queue"] = {
            "ok": (age is not None and age < DEAF_AFTER_SECONDS) or (age is None and grace),
            "heard_own_heartbeat_seconds_ago": None if age is None else round(age, 2),
        }
        return out

    def heartbeat_age(self) -> float | None:
        if self.manager is None or self.manager.last_heard is None:
            return None
        return time.time() - self.manager.last_heard

    def update_metrics(self) -> None:
        age = self.heartbeat_age()
        metrics.mq_heartbeat_age.set(-1 if age is None else age)
