"""Is this worker still part of the cluster? Redis reachable, and hearing its own heartbeat.

A worker whose message-queue listener silently stops receiving (python-socketio issue 1581)
still serves HTTP and looks healthy, while none of the other workers' emits reach its
clients. Each worker therefore publishes a heartbeat through the message queue and checks
that its own listener hears it; /healthz fails when it has not for DEAF_AFTER_SECONDS.

The same heartbeat tells a worker when it may have missed emits (a Redis restart, a dropped
subscription): beats are numbered, and a beat heard after a gap in the numbers (a beat that
was never heard, or never published) means emits may have been lost too; so does a
message-queue link that reconnected or a room channel that moved to another node (the
manager, cluster/mq.py, reports those rooms). The worker then re-sends each such room's
newest message to its own sockets, so every client sees the seq it missed and catches up
with `join {since}` (docs/RELIABILITY.md). A beat that is merely late (a hub busy with
fan-out publishes it late, or a listener working through a backlog hears it late) is no sign
of loss: Redis delivers a subscriber's messages in order and drops none without dropping the
connection.
"""

from __future__ import annotations

import logging
import time

from flask import Flask
from flask_socketio import SocketIO

from .. import metrics
from ..domain.messages import newest_in_rooms
from ..realtime import publish
from .mq import DEAF_AFTER_SECONDS, HEARTBEAT_INTERVAL_SECONDS, ShardedRedisManager
from .presence import Presence
from .shared_state import SharedState, StateUnavailable

log = logging.getLogger(__name__)

# Presence announcements are coalesced: a room of 2,000 joining at once sends ~1 list/s, not 2,000.
PRESENCE_FLUSH_SECONDS = 1.0


class Liveness:
    """Background duties of one worker and the health checks that watch them."""

    def __init__(
        self,
        socketio: SocketIO,
        presence: Presence,
        state: SharedState,
        manager: ShardedRedisManager | None,
        app: Flask | None = None,
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
        if self.manager is not None:
            # The listener normally starts with the first client; start it now so a fresh
            # worker can prove it hears the queue before anyone connects (idempotent).
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
            self.socketio.sleep(PRESENCE_FLUSH_SECONDS)  # type: ignore[arg-type]  # stub: int

    def _on_resumed(self, rooms: set[str] | None, silence: float) -> None:
        """Called by the manager in a background task when emits may have been missed."""
        log.warning(
            "message queue: own heartbeat missed, a link reconnected or a channel moved "
            "(%.1f s since the last beat heard); re-sending the newest message of %s to "
            "this worker's sockets",
            silence,
            "every room" if rooms is None else f"{len(rooms)} room(s)",
        )
        self.resend_newest(rooms)

    def resend_newest(self, channels: set[str] | None = None) -> None:
        """Push each local room's newest message to this worker's own sockets, once.

        Emits from other workers may have been lost while the queue was silent. A client
        that sees a seq beyond the last it has asks for the gap with `join {since}`; one
        that already has it drops the copy by seq. One message per room, not a replay.
        """
        rooms = self.presence.local_rooms()
        if channels is not None:  # Socket.IO room names (publish.channel) -> chat rooms
            rooms = {room for room in rooms if publish.channel(room) in channels}
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
        links = self.manager.links_alive()
        heard = (age is not None and age < DEAF_AFTER_SECONDS) or (age is None and grace)
        out["message_queue"] = {
            "ok": heard and (all(links.values()) or grace),
            "heard_own_heartbeat_seconds_ago": None if age is None else round(age, 2),
            "links": links,
        }
        return out

    def heartbeat_age(self) -> float | None:
        if self.manager is None or self.manager.last_heard is None:
            return None
        return time.time() - self.manager.last_heard

    def update_metrics(self) -> None:
        age = self.heartbeat_age()
        metrics.mq_heartbeat_age.set(-1 if age is None else age)
        metrics.mq_subscriptions.set(0 if self.manager is None else self.manager.subscriptions())
