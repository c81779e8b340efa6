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
"""

from __future__ import annotations

import queue
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


class EngineIOClient(engineio.Client):
    def create_queue(self, *args: Any, **kwargs: Any) -> queue.Queue:
        return StopStaysQueue(self)


class Client(socketio.Client):
    """socketio.Client on EngineIOClient: a closed transport always ends in a disconnect."""

    def _engineio_client_class(self) -> type[engineio.Client]:
        return EngineIOClient
