"""Cut off sockets whose session ended: a revoked, superseded or expired token.

A token is checked when a socket connects; afterwards the socket would live on with it. Each
worker checks its own sockets' tokens every SESSION_CHECK_SECONDS (`accounts.ended_sessions`
over the namespace's `OpenSessions`), tells each socket of an ended token `session_ended`
and disconnects it. Every worker runs the check on its own sockets, so a logout on any
worker reaches the sockets on all of them within one interval plus the query's time.

The check costs what can have changed, not the number of sockets: sockets sharing a token
(a browser's tabs) are one token; expiry comes off a heap; a commit-ordered session clock
(models.SessionClock) says whether anything ended anywhere since the previous check (one
row), and if so two indexed queries return only those changes; a token is looked up in full
once, at the first check after it connected, and again at every FULL_CHECK_EVERY-th check
(accounts.FULL_CHECK_EVERY, 30: a minute at 2 s), which bounds how long a change written
without moving the clock (a worker on older code during a rolling deploy, a direct write)
goes unseen here.
"""

from __future__ import annotations

import logging

from flask import Flask
from flask_socketio import SocketIO

from ..domain import accounts
from ..errors import from_unexpected
from ..extensions import socketio_server
from .namespace import ChatNamespace

log = logging.getLogger(__name__)


class SessionGuard:
    def __init__(self, app: Flask, socketio: SocketIO, namespace: ChatNamespace) -> None:
        self.app, self.socketio, self.namespace = app, socketio, namespace
        self.interval = app.config["SESSION_CHECK_SECONDS"]
        self.running = False

    def start(self) -> None:
        """Start the periodic check; once per worker process, after the server exists."""
        if self.running:
            return
        self.running = True
        self.socketio.start_background_task(self._loop)

    def stop(self) -> None:
        self.running = False

    def _loop(self) -> None:
        while self.running:
            self.socketio.sleep(self.interval)
            try:
                self.check()
            except Exception as exc:
                err = from_unexpected(exc)
                if err.code == "internal":
                    log.exception("session check failed; retrying")
                else:  # the database is down: the sockets stay until it is back
                    log.warning("session check skipped: %s (%s)", err.message, type(exc).__name__)

    def check(self) -> list[str]:
        """Disconnect this worker's sockets whose session ended; returns their sids."""
        with self.app.app_context():
            ended = accounts.ended_sessions(
                self.namespace.principals, self.app.config["TOKEN_TTL_SECONDS"]
            )
        for sid in ended:
            log.info("session ended: disconnecting %s", sid)
            self.socketio.emit(
                "session_ended",
                {"code": "unauthorized", "message": "session ended: log in again"},
                to=sid,
            )
            socketio_server(self.socketio).disconnect(sid, namespace=self.namespace.namespace)
        return ended
