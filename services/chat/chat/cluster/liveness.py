"""Is this worker still part of the cluster? Redis reachable, and hearing its own heartbeat.

A worker whose message-queue listener silently stops receiving (python-socketio issue 1581)
still serves HTTP and looks healthy, while none of the other workers' emits reach its
clients. Each worker therefore publishes a heartbeat through the message queue and checks
that its own listener hears it; /healthz fails when it has not for DEAF_AFTER_SECONDS.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import socketio as pysocketio

from .. import metrics
from .presence import Presence
from .shared_state import SharedState

log = logging.getLogger(__name__)

# Beats every 2 s; three missed beats in a row mean the listener is deaf, not just busy.
HEARTBEAT_INTERVAL_SECONDS = 2.0
DEAF_AFTER_SECONDS = 3 * HEARTBEAT_INTERVAL_SECONDS
# Presence announcements are coalesced: a room of 2,000 joining at once sends ~1 list/s, not 2,000.
PRESENCE_FLUSH_SECONDS = 1.0


class HeartbeatRedisManager(pysocketio.RedisManager):
    """python-socketio's Redis manager, plus a heartbeat that travels the listener's path.

    The beat is published as a `callback` message: the one method the listener hands to
    this host even when it sent it (emits from the own host are skipped).
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.last_heard: float | None = None
        self.started = time.time()

    def beat(self) -> None:
        self._publish({"method": "callback", "host_id": self.host_id, "heartbeat": time.time()})

    def _handle_callback(self, message: dict) -> None:
        if "heartbeat" in message:
            if message.get("host_id") == self.host_id:
                self.last_heard = time.time()
            return
        super()._handle_callback(message)


class Liveness:
    """Background duties of one worker and the health checks that watch them."""

    def __init__(
        self,
        socketio,
        presence: Presence,
        state: SharedState,
        manager: HeartbeatRedisManager | None,
    ) -> None:
        self.socketio, self.presence, self.state, self.manager = socketio, presence, state, manager
        self.running = False
        self._next_presence_beat = 0.0

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
            except Exception:
                log.exception("background duty failed; retrying")
            self.socketio.sleep(PRESENCE_FLUSH_SECONDS)

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
