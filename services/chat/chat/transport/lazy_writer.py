"""Engine.IO's WebSocket writer task only while a socket has something to write (gevent).

python-engineio 4 starts one writer task per WebSocket (`Socket._websocket_handler`) that
waits in `poll()` on the socket's queue, ping_interval + ping_timeout at a time, for the whole
life of the connection: at 8,000 idle WebSockets, 8,000 greenlets (each with its saved C
stack, ~4 KiB) and 8,000 armed timers. With direct writes (direct_write.py) that queue only
carries what the emitting greenlet could not write at once: frames the kernel did not take
whole, and control packets. `LazyWriterSocket` starts the writer when something is queued
and lets it end once the queue is empty, and writes PINGs the way direct_write writes
messages (at once, when no writer is running, the queue is empty and the kernel takes the
frame whole), so an idle socket keeps neither a writer nor a timer.

What is kept, as with Engine.IO's writer:
- Order: a packet is written directly only when nothing is queued and no writer runs (it
  holds no packets then); otherwise it is queued and the writer, started by that put if none
  runs, writes the queue in order. The check, the write and the decision happen without a
  greenlet switch in between. A writer that finds the queue empty ends without a switch
  between that look and marking itself gone, so a put is never left without a writer.
- The bound on bytes queued and PONG-after-PING (socket_limits): the writer calls `poll()`
  as Engine.IO's does, and accounts its last batch as written (`_written`) when it ends; a
  PING written directly counts as written at once (a partly written one counts once its
  remainder is).
- The end: a `None` in the queue (the reader loop ended, or `close()`) makes the writer
  close the WebSocket, as Engine.IO's writer does; a failed write ends it the same way, and
  no writer is started again for that WebSocket.
- The queue itself (a gevent JoinableQueue, 2.5 KiB): made at the first put
  (socket_limits.LimitedSocket.queue) and let go when the writer ends with it empty, so an
  idle socket holds none. Not while a task is inside `poll()`: a long-poll GET from before
  an upgrade waits on that queue object, and would wait on it in vain (then time out and
  close the session) if the next put went to a new one. A long-polling socket keeps its
  queue (no WebSocket writer ends), and so does every socket under Engine.IO's threading
  mode (another thread may hold the queue it looked up).
- Liveness: Engine.IO's writer also gave up after ping_interval + ping_timeout without a
  packet to send; with a PING every ping_interval (transport/pings.py) that never happens to
  a live socket, and the reader keeps its own read timeout of the same length.

The reader: once the WebSocket is open the connection is parked (parking.py) where it can be:
no greenlet reads it until bytes arrive. `_read_one` is one turn of Engine.IO's reader loop
and `_end_websocket` what follows the loop, used by both.

The reach into python-engineio: `_websocket_handler` is its 4.15.1 code with the writer
changed and the reader loop split into those two steps (the upgrade and each step as there).
It is used only on that version (`UPSTREAM_OK`); on another, Engine.IO's own handler runs (a
writer per socket, as before), and `test_upstream_engineio_*` in tests/test_lazy_writer.py
fail until the copy is checked against the new code.
"""

from __future__ import annotations

import threading
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import engineio.socket
from engineio import exceptions
from engineio import packet as eio_packet

from . import parking, upstream
from .direct_write import DirectWriteSocket, _Remainder
from .socket_limits import packet_bytes, take_all_queued

# The python-engineio whose `Socket._websocket_handler` is copied below.
TESTED_ENGINEIO_VERSION = "4.15.1"
UPSTREAM_OK = version("python-engineio") == TESTED_ENGINEIO_VERSION


if TYPE_CHECKING:  # to mypy, Engine.IO's own class (python-engineio ships no types: Any)
    from engineio.socket import Socket as _EngineIOSocket
else:
    _EngineIOSocket = upstream.engineio_socket_class()


# A PING's Engine.IO text, one object: the frame cache (frame_cache.py) keys frames by the
# str's identity, and a new "2" per PING would push broadcast frames out of it.
PING_TEXT: str = eio_packet.Packet(eio_packet.PING).encode()

# Held while a writer is started or decides to end, so a put is never left without one. Under
# gevent and eventlet nothing in it switches greenlets (it never waits); it matters for
# Engine.IO's threading mode (tests). One for all sockets: no lock object per socket.
_handover = threading.Lock()

# Engine.IO async modes where a task switches only where it waits (`_release_idle_queue`).
_GREEN_MODES = frozenset({"gevent", "eventlet"})


class _PingRemainder(_Remainder):
    """The rest of a PING frame the kernel did not take at once: a PING for socket_limits."""

    __slots__ = ()
    packet_type = eio_packet.PING


class LazyWriterHandler(_EngineIOSocket):
    """Engine.IO's Socket whose WebSocket writer runs only while something is queued.

    Below socket_limits' LimitedSocket in the method order (see LazyWriterSocket): its
    `_websocket_handler` is what LimitedSocket's and DirectWriteSocket's call as Engine.IO's.
    """

    # The transport while the handler is in its reader loop; None before and after.
    _lazy_ws: Any = None
    # The running writer task, or None.
    _lazy_writer: Any = None
    # Engine.IO's own attribute (set in its __init__), declared for mypy: the copy below sets it.
    connected: bool
    # The writer met the end of the queue (None) or a failed write: it started its last.
    _lazy_done = False
    # The reader was parked (parking.py): declared in socket_limits.LimitedSocket too.
    _parked = False

    def _websocket_handler(self, ws):
        if not UPSTREAM_OK:
            return super()._websocket_handler(ws)
        server = self.server

        # --- from here to the writer: python-engineio 4.15.1 (its `websocket_wait` is
        # `_wait_packet` below) -----------------------------------------------------------------
        for attr in ["_sock", "socket"]:
            if hasattr(ws, attr) and hasattr(getattr(ws, attr), "settimeout"):
                getattr(ws, attr).settimeout(server.ping_interval + server.ping_timeout)

        if self.connected:
            # the socket was already connected, so this is an upgrade
            self.upgrading = True  # hold packet sends during the upgrade

            pkt = self._wait_packet(ws)
            decoded_pkt = eio_packet.Packet(encoded_packet=pkt)
            if decoded_pkt.packet_type != eio_packet.PING or decoded_pkt.data != "probe":
                server.logger.info("%s: Failed websocket upgrade, no PING packet", self.sid)
                self.upgrading = False
                return []
            ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
            self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # end poll

            pkt = self._wait_packet(ws)
            decoded_pkt = eio_packet.Packet(encoded_packet=pkt)
            if decoded_pkt.packet_type != eio_packet.UPGRADE:
                self.upgraded = False
                server.logger.info(
                    "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead.",
                    self.sid,
                    pkt,
                )
                self.upgrading = False
                return []
            self.upgraded = True
            self.upgrading = False
        else:
            self.connected = True
            self.upgraded = True

        # --- the writer: started by a put (`_wake_writer`), not here --------------------------
        self._lazy_ws = ws
        self._lazy_done = False
        self._writer_ended()  # nothing in flight: direct writes may go
        self._wake_writer()  # anything queued during the upgrade

        server.logger.info("%s: Upgrade to websocket successful", self.sid)

        # --- the reader: parked on a watcher when it can be (parking.py), else Engine.IO's
        # loop on this greenlet -----------------------------------------------------------------
        self._parked = True  # before park(): a parked reader may end at once
        if parking.park(self, ws):
            return []
        self._parked = False
        while self._read_one(ws):
            pass
        self._end_websocket()
        return []

    def _wait_packet(self, ws: Any) -> Any:
        """python-engineio 4.15.1's `websocket_wait`: the next message, or None at the end."""
        data = ws.wait()
        if data and len(data) > self.server.max_http_buffer_size:
            raise ValueError("packet is too large")
        return data

    def _read_one(self, ws: Any) -> bool:
        """One turn of python-engineio 4.15.1's reader loop: read a packet and receive it.

        Returns False where Engine.IO's loop breaks (the connection ends).
        """
        server = self.server
        try:
            p = self._wait_packet(ws)
        except Exception as e:
            if not self.closed:
                server.logger.info(
                    '%s: Unexpected error "%s", closing connection', self.sid, str(e)
                )
            return False
        if p is None:
            # connection closed by client
            return False
        pkt = eio_packet.Packet(encoded_packet=p)
        try:
            self.receive(pkt)
        except exceptions.UnknownPacketError:
            pass
        except exceptions.SocketIsClosedError:
            server.logger.info("Receive error -- socket is closed")
            return False
        except Exception:
            server.logger.exception("Unknown receive error")
            return False
        return True

    def _end_websocket(self) -> None:
        """After the reader loop: as Engine.IO's, with the writer started for the None."""
        self.queue.put(None)  # unlock the writer task so that it can exit
        self._wake_writer()
        writer = self._lazy_writer
        if writer is not None:
            writer.join()
        self._lazy_ws = None
        self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)

    def _parked_reader_ended(self) -> None:
        """The parked reader's end (parking.ParkedReader.end): the reader loop's, then the
        transport's (`_websocket_ended`, which the handler's return did not run)."""
        try:
            self._end_websocket()
        finally:
            self._websocket_ended()
            # What Engine.IO's request handler does once the WebSocket handler returned.
            sockets = self.server.sockets
            if self.closed and sockets.get(self.sid) is self:
                del sockets[self.sid]

    def _websocket_ended(self) -> None:
        """The transport ended (socket_limits.LimitedSocket calls it; nothing to forget here)."""

    def _wake_writer(self) -> None:
        """Start a writer if something is queued and none runs."""
        with _handover:
            if self._lazy_done:
                self._discard_queued()
                return
            if self._lazy_ws is None or self._lazy_writer is not None or not self._queued_count():
                return
            self._lazy_writer = self.server.start_background_task(self._write_queued)
            self._writer_started()

    def _write_queued(self) -> None:
        """The writer: Engine.IO's loop, ending when the queue is empty instead of waiting."""
        ws = self._lazy_ws
        try:
            while True:
                with _handover:  # the look at the queue and the exit, as one step
                    if ws is None or self._lazy_done or not self._queued_count():
                        self._lazy_writer = None
                        if self._lazy_done:
                            self._discard_queued()
                        else:
                            self._writer_ended()
                        break
                try:
                    packets = self.poll()  # returns at once: the queue holds something
                except exceptions.QueueEmpty:  # taken by someone else meanwhile
                    continue
                if not packets:  # the None: the connection ends
                    self._lazy_done = True
                    continue
                try:
                    for pkt in packets:
                        ws.send(pkt.encode())
                except Exception:
                    self._lazy_done = True
        finally:
            self._lazy_writer = None
        if self._lazy_done and ws is not None:
            ws.close()

    def _discard_queued(self) -> None:
        """Take what is queued after the writer met the end; called holding `_handover`.

        No writer will write it (the WebSocket is closed or failed), and Engine.IO's
        `close(wait=True)` joins the queue: a packet or `None` put after the end (a server
        disconnect, the reader loop's own `None`) would otherwise keep that join waiting for
        ever.
        """
        take_all_queued(self)

    def _writer_started(self) -> None:
        """A writer is about to take packets (subclasses stop direct writes)."""

    def _writer_ended(self) -> None:
        """The writer holds no packets any more (subclasses account its last batch)."""


class LazyWriterSocket(DirectWriteSocket, LazyWriterHandler):
    """DirectWriteSocket (and socket_limits' LimitedSocket) with the writer on demand.

    Method order: LazyWriterSocket, DirectWriteSocket, LimitedSocket, LazyWriterHandler,
    Engine.IO's Socket: the limits and direct writes wrap this module's handler.
    """

    # Tasks inside poll() (the writer; a long-poll GET, which may wait there): they hold the
    # queue object, so it is not let go (`_release_idle_queue`) while any is.
    _pollers = 0

    def poll(self):
        self._pollers += 1
        try:
            return super().poll()
        finally:
            self._pollers -= 1

    def _release_idle_queue(self) -> None:
        """Let the queue go if nothing can tell it from the new one its next use makes.

        That is: it is empty, every item taken from it is done (a `join()` returns at once),
        and no task is inside `poll()` (only there does a task hold the queue object across a
        switch: a long-poll GET from before an upgrade waits on it; everything else looks
        `self.queue` up at each use, and under gevent and eventlet nothing switches between
        that look and the use). Never under Engine.IO's threading mode, where another thread
        may have looked it up and be about to put.
        """
        queue = self._queue
        if (
            queue is None
            or self._pollers
            or queue.qsize()
            or queue.unfinished_tasks
            or self.server.async_mode not in _GREEN_MODES
        ):
            return
        self._queue = None

    def _enqueue(self, item: Any, size: int) -> None:
        if self._lazy_done:
            # The writer met the end: nothing more is written, so nothing more is counted
            # against MAX_SOCKET_QUEUE_BYTES (a dead socket is not cut as a slow reader).
            return
        super()._enqueue(item, size)
        self._wake_writer()

    def _writer_ended(self) -> None:
        # What LimitedSocket.poll() does when Engine.IO's writer comes back for more: the
        # batch it took has been written (bytes queued go down, a PING in it counts).
        self._written()
        # What DirectWriteSocket.poll() sets while Engine.IO's writer waits in it.
        self._writer_waiting = self._direct_ws is not None and self.upgraded and not self.upgrading
        # Nothing is queued and no writer runs: an idle socket keeps no queue either (the
        # next put makes one and starts a writer for it).
        self._release_idle_queue()

    def _writer_started(self) -> None:
        self._writer_waiting = False  # a writer holds (or is about to take) packets

    def send(self, pkt) -> None:
        if pkt.packet_type != eio_packet.PING:
            # A message (every recipient of a broadcast): direct_write's send, named rather
            # than found by super() once per recipient. It is the next class in the order.
            return DirectWriteSocket.send(self, pkt)
        ws = self._direct_ws
        if ws is None or not self._writer_waiting or self._queued_count():
            return super().send(pkt)
        # A PING, written now as direct_write writes messages (see the module docstring).
        if not self.check_ping_timeout():
            return None
        self._ping_written = self._early_pong = False
        rest = ws.send_nowait(PING_TEXT)  # one str for every PING: one frame-cache entry
        if rest is None:  # nothing written: the writer sends it, or meets the error
            self._enqueue(pkt, packet_bytes(pkt))
        elif rest:
            remainder = _PingRemainder(rest)
            self._enqueue(remainder, packet_bytes(remainder))
        else:
            self._ping_written = True
        return None

    def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        # Engine.IO's close() puts the None (and a CLOSE) in the queue and, with `wait`, joins
        # the queue: the writer must be started before that join.
        first = not self.closed and not self.closing
        super().close(wait=False, abort=abort, reason=reason)
        self._wake_writer()
        if first and wait:
            self.queue.join()


def install() -> None:
    """Make Engine.IO create LazyWriterSocket for every new session (after direct_write's).

    Raises upstream.UntestedUpstream on a python-engineio outside the tested range; within it
    but on another version than TESTED_ENGINEIO_VERSION, Engine.IO's own handler runs.
    """
    upstream.require("python-engineio", "lazy_writer (a subclass of engineio.socket.Socket)")
    engineio.socket.Socket = LazyWriterSocket
