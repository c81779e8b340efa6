"""python-socketio's client, with a fix for a lost disconnect in python-engineio's client.

python-engineio 4.15.1 (the latest release) stops its WebSocket write loop by putting None on
the send queue. The loop takes whatever is queued in one batch; when a packet sits ahead of
the None (an emit made just as the server closed the transport), it drops the None, sends the
packet (the kernel takes it: the peer's close has not turned into a reset yet) and waits on
the queue again, for up to max(ping_interval, ping_timeout) + 5 s. The read loop waits for the
write loop before it reports the disconnect, so for that long the client counts itself
connected, reconnects to nobody, and every call on it times out. A rolling restart met this:
a catch-up `join` emitted as the worker drained left the client dark for 20 s.

Here the None, once handed out behind other packets while the connection is up, is put back,
so the write loop's next get() returns it and the loop ends as it meant to.

python-socketio's `call()` also keeps waiting for an ack after the connection dropped (its
docstring says so): an event sent on a transport that was closing is lost, and the caller sat
out its whole timeout before it could retry. Here a call still waiting when the connection
drops raises DisconnectedError at once, as the web client gives up on its pending acks.
"""

from __future__ import annotations

import queue
import threading
from importlib.metadata import version
from typing import Any

import engineio
import socketio


class StopStaysQueue(queue.Queue):
    """A send queue whose stop marker (None) is not lost when taken behind other packets."""

    def __init__(self, owner: engineio.Client) -> None:
        super().__init__()
        self.owner = owner

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        item = super().get(block, timeout)
        if item is None and not block and self.owner.state == "connected":
            # The write loop takes a batch with get(block=False) and drops a None it finds
            # there; its next blocking get() must see it again. (Once the client is
            # disconnecting the loop ends by its state, and a None put back then would be
            # left for the next connection's write loop.)
            self.put(None)
        return item

    def get_nowait(self) -> Any:
        # The client empties the queue with get_nowait() when a connection ends.
        return super().get(block=False)


# Client overrides python-socketio's private `_engineio_client_class` and
# `_handle_eio_disconnect`, and EngineIOClient relies on python-engineio's write loop taking
# batches with get(block=False). Tested on these ranges (the same as the worker's, in
# chat/transport/upstream.py; tests/test_sioclient.py checks they agree and holds the
# test_upstream_* canary): package -> (lowest tested (major, minor), first not tested).
TESTED: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "python-engineio": ((4, 15), (5, 0)),
    "python-socketio": ((5, 18), (6, 0)),
}


class UntestedUpstream(RuntimeError):
    """python-socketio or python-engineio is outside the range this client was tested on."""


def require_tested_versions() -> None:
    """Raise UntestedUpstream unless both libraries are in their TESTED range."""
    for package, (low, high) in TESTED.items():
        installed = version(package)
        digits = ["".join(c for c in part if c.isdigit()) or "0" for part in installed.split(".")]
        major_minor = (int(digits[0]), int(digits[1]) if len(digits) > 1 else 0)
        if not low <= major_minor < high:
            raise UntestedUpstream(
                f"testkit.sioclient relies on {package} internals tested on {low[0]}.{low[1]} "
                f"up to (not including) {high[0]}.{high[1]}; {installed} is installed: run "
                "services/testkit/tests/test_sioclient.py, then update TESTED there"
            )


class EngineIOClient(engineio.Client):
    def create_queue(self, *args: Any, **kwargs: Any) -> queue.Queue:
        return StopStaysQueue(self)


class Client(socketio.Client):
    """socketio.Client on EngineIOClient; a call waiting for its ack ends with the connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        require_tested_versions()
        super().__init__(*args, **kwargs)
        self._waiting_acks: set[threading.Event] = set()
        self._waiting_lock = threading.Lock()

    def _engineio_client_class(self) -> type[engineio.Client]:
        return EngineIOClient

    def call(
        self, event: str, data: Any = None, namespace: str | None = None, timeout: float = 60
    ) -> Any:
        acked = threading.Event()
        ack: list[tuple] = []

        def on_ack(*args: Any) -> None:
            ack.append(args)
            acked.set()

        with self._waiting_lock:
            self._waiting_acks.add(acked)
        try:
            self.emit(event, data=data, namespace=namespace, callback=on_ack)
            if not acked.wait(timeout):
                raise socketio.exceptions.TimeoutError()
        finally:
            with self._waiting_lock:
                self._waiting_acks.discard(acked)
        if not ack:
            raise socketio.exceptions.DisconnectedError(f"disconnected before the ack of {event!r}")
        args = ack[0]
        return args if len(args) > 1 else args[0] if args else None

    def _handle_eio_disconnect(self, reason: Any) -> None:
        super()._handle_eio_disconnect(reason)
        # The callbacks are gone with the connection: wake whoever still waits for one.
        with self._waiting_lock:
            for waiting in self._waiting_acks:
                waiting.set()
