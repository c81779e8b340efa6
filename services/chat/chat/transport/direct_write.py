"""Engine.IO sockets that write a message frame in the emitting greenlet (gevent only).

python-engineio's `Socket.send` puts every packet on the socket's queue, and a writer greenlet
per WebSocket takes it off and writes it. Under fan-out that hop is most of a worker's CPU
after the `send()` syscall itself: a queue put, a wake-up of the writer and two greenlet
switches per recipient (docs/BENCHMARKS.md, section 3). `DirectWriteSocket.send` skips it
when nothing is in the way: the socket is on the WebSocket transport, its writer is waiting
on an empty queue, and the kernel takes the frame now. The write is non-blocking, so a slow
client never holds up the emitting greenlet (the reason Engine.IO has the queues); whatever
the kernel does not take goes through the queue and the writer, as before.

What keeps each socket's frames in order: a frame is written here only when no earlier one
is pending anywhere, i.e. the queue is empty and the writer is blocked in `poll()` (it holds
no packets then; a gevent queue keeps a put item in the queue until the getter runs, so an
item handed to a writer that has not run yet still counts). The check and the write happen
without a greenlet switch in between. A partly written frame's remaining bytes are the first
thing queued after it, so everything later queues behind them.

Only MESSAGE packets take this path; OPEN, PING, CLOSE and NOOP (upgrade) packets keep the
queue, and `check_ping_timeout` runs for every packet as in `Socket.send`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import engineio.socket
from engineio import packet as eio_packet
from prometheus_client.core import CounterMetricFamily

from .. import metrics
from . import upstream
from .frame_cache import FrameBytes
from .socket_limits import LimitedSocket, packet_bytes


class _Remainder:
    """A queue item for the writer: the part of a frame the kernel did not take at once."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = FrameBytes(data)

    def encode(self, b64: bool = False) -> FrameBytes:
        # The writer calls ws.send(pkt.encode()); frames.BoundedWebSocket writes FrameBytes raw.
        return self.data


class FrameCounts:
    """How message frames reached WebSockets, as plain counters (no lock on the hot path)."""

    def __init__(self) -> None:
        self.direct = 0  # written whole in the emitting greenlet
        self.partial = 0  # written in part there, the rest by the writer
        self.queued = 0  # handed to the writer (it was busy, or the kernel took nothing)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "chat_websocket_frames",
            "Message frames to WebSockets, by how they were written "
            "(DIRECT_WEBSOCKET_WRITES; absent when it is off)",
            labels=["path"],
        )
        family.add_metric(["direct"], self.direct)
        family.add_metric(["partial"], self.partial)
        family.add_metric(["queued"], self.queued)
        yield family


counts = FrameCounts()


class DirectWriteSocket(LimitedSocket):
    """Engine.IO's Socket, writing message frames at once when its writer is idle.

    The bound on bytes queued (socket_limits) counts what goes through the queue: a frame the
    kernel took whole here never waits in this process.
    """

    # The gevent-websocket WebSocket (frames.BoundedWebSocket) while this socket is on that
    # transport; None on long-polling or after the WebSocket ended.
    _direct_ws = None
    # True while the WebSocket writer waits in poll(), holding no packets.
    _writer_waiting = False

    def _websocket_handler(self, ws: Any) -> Any:
        target = getattr(ws, "_sock", None)
        self._direct_ws = target if hasattr(target, "send_nowait") else None
        return super()._websocket_handler(ws)  # LimitedSocket's calls _websocket_ended

    def _websocket_ended(self) -> None:
        self._direct_ws = None
        self._writer_waiting = False
        super()._websocket_ended()

    def poll(self) -> list[Any]:
        # After the upgrade the writer is the only caller; a long-poll GET still waiting from
        # before it (or during it) does not count as an idle writer.
        self._writer_waiting = self._direct_ws is not None and self.upgraded and not self.upgrading
        try:
            return super().poll()
        finally:
            self._writer_waiting = False

    def send(self, pkt: eio_packet.Packet) -> None:
        ws = self._direct_ws
        if ws is None or pkt.packet_type != eio_packet.MESSAGE or pkt.binary:
            return super().send(pkt)
        if not self._writer_waiting or self._queued_count():
            counts.queued += 1
            return super().send(pkt)
        if not self.check_ping_timeout():
            return None
        rest = ws.send_nowait(pkt.encode())
        if rest is None:  # nothing written: the writer sends it, or meets the error
            counts.queued += 1
            self._enqueue(pkt, packet_bytes(pkt))
        elif rest:
            counts.partial += 1
            remainder = _Remainder(rest)
            self._enqueue(remainder, packet_bytes(remainder))
        else:
            counts.direct += 1
        logger = self.server.logger
        if logger.isEnabledFor(logging.INFO):
            logger.info("%s: Sending packet MESSAGE data %s", self.sid, pkt.data)
        return None


_installed = False


def install() -> None:
    """Make Engine.IO create DirectWriteSocket for every new session in this process.

    engineio.Server creates its sockets as `socket.Socket(self, sid)` (server.py,
    _handle_connect) and has no factory to pass; a worker process runs one Engine.IO server.
    """
    global _installed
    if _installed:
        return
    upstream.require("python-engineio", "direct_write (a subclass of engineio.socket.Socket)")
    engineio.socket.Socket = DirectWriteSocket
    metrics.registry.register(counts)
    _installed = True
