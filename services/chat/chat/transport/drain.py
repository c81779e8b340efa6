"""The drain on SIGTERM: clients move to another worker, what is in flight finishes, then exit."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from .. import metrics

log = logging.getLogger(__name__)

# How often the drain looks whether the last handlers have finished.
POLL_SECONDS = 0.05


class EventGate(Protocol):
    """What the drain needs of the Socket.IO namespace (realtime.namespace.ChatNamespace)."""

    events_running: int

    def stop_accepting_events(self) -> None: ...


class Drain:
    """SIGTERM: let the clients move to another worker, finish what is in flight, exit.

    1. Close the listening socket: new connections are refused, so nginx sends them (and
       the reconnects below) to another worker at once.
    2. Mark every response `Connection: close` and refuse new Engine.IO sessions (503), so
       connections nginx keeps alive to this worker carry no new sessions here.
    3. Answer every new Socket.IO event `unavailable` at once (clients retry, with the same
       client_id, once they are on another worker) and wait, at most half of `seconds`,
       for the event handlers already running: their acks go out on transports still open.
       Closing first lost those acks, and a client waits out its ack timeout (5-10 s)
       before it sends again.
    4. Close every Engine.IO socket's transport without an Engine.IO CLOSE packet, as a
       dying process would but while this one still runs: Socket.IO clients treat a lost
       transport as a reason to reconnect (the JavaScript client also reconnects after a
       CLOSE packet, python-socketio's does not; a Socket.IO DISCONNECT packet would stop
       both from reconnecting). They come back through nginx on another worker and catch
       up by seq.
    5. Wait until no request or event handler is running, until `seconds` have passed
       since the start, then exit 0.
    """

    def __init__(
        self,
        socketio: Any,
        on_exit: Callable[[], None],
        seconds: float,
        events: EventGate,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`socketio`: the flask_socketio.SocketIO; `clock`: seconds, monotonic (tests fake it)."""
        self.socketio, self.on_exit, self.seconds = socketio, on_exit, seconds
        self.events = events
        self.clock = clock
        self.close_listener: Callable[[], None] = lambda: None
        self.draining = False

    def begin(self) -> None:
        """Start draining (idempotent); safe to call from a signal handler."""
        if not self.draining:
            self.draining = True
            self.socketio.start_background_task(self._run)

    def _run(self) -> None:
        self.drain()
        self.on_exit()
        logging.shutdown()
        os._exit(0)

    def drain(self) -> int:
        """Steps 1 and 3-5 (step 2 is the middleware's); returns the sockets closed."""
        started = self.clock()
        try:
            self.close_listener()
        except Exception:
            log.exception("drain: closing the listener failed")
        events = self.events
        events.stop_accepting_events()
        running = events.events_running
        self._wait(lambda: events.events_running > 0, started + self.seconds / 2)
        eio = self.socketio.server.eio
        sockets = list(eio.sockets.items())
        log.info(
            "SIGTERM: draining: listener closed; new events refused; %d event handlers were "
            "running (%d still are); closing %d client transports so the clients reconnect "
            "to another worker",
            running,
            events.events_running,
            len(sockets),
        )
        for sid, sock in sockets:
            try:
                sock.close(wait=False, abort=True, reason=eio.reason.SERVER_DISCONNECT)
            except Exception:
                log.exception("drain: closing socket %s failed", sid)
            eio.sockets.pop(sid, None)
        self._wait(lambda: in_progress() > 0, started + self.seconds)
        log.info(
            "SIGTERM: drained %d sockets in %.2f s (%d handlers still running); exiting",
            len(sockets),
            self.clock() - started,
            in_progress(),
        )
        return len(sockets)

    def _wait(self, busy: Callable[[], bool], deadline: float) -> None:
        """Poll until `busy()` is false or the deadline passes."""
        while busy() and self.clock() < deadline:
            self.socketio.sleep(POLL_SECONDS)

    def wsgi_middleware(self, wsgi_app: WSGIApplication) -> WSGIApplication:
        """Count requests in flight; while draining, close connections and refuse sessions.

        The result is passed through untouched (eventlet recognises a WebSocket response by
        identity). A WebSocket or long-poll request runs inside the call, a REST response is
        computed there: counting the call counts what the drain must wait for.
        """

        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            if self.draining:
                if _opens_engineio_session(environ):
                    start_response(
                        "503 Service Unavailable",
                        [
                            ("Content-Type", "text/plain"),
                            ("Connection", "close"),
                            ("Retry-After", "1"),
                        ],
                    )
                    return [b"this worker is shutting down; reconnect"]
                start_response = _closing(start_response)
            with metrics.handlers_in_progress.track_inprogress():
                return wsgi_app(environ, start_response)

        return app


def _closing(start_response: StartResponse) -> StartResponse:
    def closing_start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        headers = [(k, v) for k, v in headers if k.lower() != "connection"]
        return start_response(status, [*headers, ("Connection", "close")], exc_info)

    return closing_start_response


def in_progress() -> int:
    """Requests and Socket.IO event handlers running right now in this worker."""
    # The gauge's own collect(): the registry's would read every collector (/proc too).
    (family,) = metrics.handlers_in_progress.collect()
    return int(family.samples[0].value)


def _opens_engineio_session(environ: WSGIEnvironment) -> bool:
    return environ.get("PATH_INFO", "").startswith("/socket.io") and "sid=" not in environ.get(
        "QUERY_STRING", ""
    )
