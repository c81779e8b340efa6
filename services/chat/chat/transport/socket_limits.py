"""Limits on each Engine.IO socket: bytes queued to it, liveness by PONG, time to authenticate.

python-engineio gives every socket an unbounded queue of packets to send, and a writer task
(WebSocket) or the next long-poll GET takes them off. A client that stops reading fills the
kernel's buffers, then the queue: 486 messages (23 MB) queued for one member that answered
pings blindly, and the worker grew until it was stopped. What is done here, in both async modes
(gevent and eventlet, with or without direct writes):

- Bytes queued. Every packet handed to a socket is counted from when it is queued until the
  writer has written it to the kernel (for a long-poll GET: until it is handed to the
  response); direct writes count only the part of a frame the kernel did not take
  (direct_write.py). When what waits behind the packet at the head of the line (the one
  being written, else the next) would pass MAX_SOCKET_QUEUE_BYTES, the socket's transport is
  closed at once: the queue is emptied (the memory is freed then, not when the client goes),
  the TCP connection is shut down (a writer blocked on the full kernel buffer wakes up and
  ends) and no Engine.IO CLOSE packet is sent, so Socket.IO clients reconnect and catch up
  with `since`.
- Liveness. Engine.IO takes any PONG that arrives while a PING is outstanding as the answer,
  although the PING may still sit in the queue behind a backlog the client never read: a
  client that sends a PONG every 25 s blindly stays "alive" forever (and Engine.IO's ping
  timeout queued a CLOSE packet behind the backlog, leaving the writer blocked). Here a PONG
  counts only once its PING has been written to the transport (one that comes earlier waits
  for that), so such a client misses the ping timeout, which closes the transport the same
  way.
- Time to authenticate. A session that has not completed a Socket.IO CONNECT (this
  application's CONNECT requires a valid token) within AUTH_TIMEOUT_SECONDS of its opening is
  closed the same way, by one sweeper task per worker (`start_sweeper`).
- A WebSocket message that is no Engine.IO packet (empty, not UTF-8, bad type digit) raised
  out of Engine.IO's WebSocket loop; under eventlet that became an HTTP 500 with a traceback.
  It closes that connection instead, in both modes (gevent's server checks it too, frames.py).

The reach into python-engineio: `engineio.socket.Socket` is replaced by a subclass (the server
creates sockets as `socket.Socket(self, sid)` and has no factory), which overrides `send`,
`poll`, `receive`, `check_ping_timeout` and `_websocket_handler`, relying on the writer loop
calling `poll()` again only after it wrote the previous batch. Its `__init__` sets what
Engine.IO's BaseSocket.__init__ sets except the queue, made on first use (the `queue`
property): every use of Engine.IO's is a put, get or join that needs one. Tested on
python-engineio 4.15; the test_upstream_* canaries in tests/test_socket_limits.py fail when
that changes.
"""

from __future__ import annotations

import contextlib
import logging
import socket as std_socket
import threading
import time
from collections import OrderedDict
from typing import Any

import engineio
import engineio.socket
import socketio
from engineio import packet as eio_packet
from engineio.socket import Socket as _EngineIOSocket

from .. import metrics
from . import upstream
from .packet_filter import engineio_problem, refused

log = logging.getLogger(__name__)

# OPEN, PING, NOOP and CLOSE packets carry a few dozen bytes at most.
_SMALL_PACKET_BYTES = 64
# How often the sweeper looks for sessions past AUTH_TIMEOUT_SECONDS: the timeout is a few
# seconds, so a session lives at most a second longer than it.
SWEEP_EVERY_SECONDS = 1.0


def packet_bytes(pkt: Any) -> int:
    """What a queued packet holds, without encoding it (no per-recipient work).

    Socket.IO's JSON is ASCII (escapes for the rest), so a str's length is its size on the wire.
    """
    data = getattr(pkt, "data", None)
    if isinstance(data, (str, bytes)):
        return len(data) + 1
    return _SMALL_PACKET_BYTES


def take_all_queued(sock: Any) -> None:
    """Take every item `sock`'s queue holds and mark it done (a `join()` then returns); a
    socket without a queue yet (LimitedSocket.queue) gets none made just to be emptied."""
    queue = sock._queue
    if queue is None:
        return
    queue_empty = sock.server.get_queue_empty_exception()
    while True:
        try:
            queue.get(block=False)
        except queue_empty:
            return
        queue.task_done()


class LimitedSocket(_EngineIOSocket):
    """Engine.IO's Socket with the limits of this module (see there)."""

    # Set by install() from the configuration.
    max_queue_bytes = 1 << 20
    auth_timeout_seconds = 5.0

    def __init__(self, server: engineio.Server, sid: str) -> None:
        # Engine.IO's BaseSocket.__init__ (python-engineio 4.15.1) without its queue, which is
        # made on first use (`queue`): not calling it is what saves the queue, so the two must
        # set the same attributes (canary test_upstream_engineio_socket_init_sets_what_ours_*).
        self.server = server
        self.sid = sid
        self._queue: Any = None
        self.last_ping: float | None = time.time()
        self.connected = False
        self.upgrading = False
        self.upgraded = False
        self.closing = False
        self.closed = False
        self.session: dict[str, Any] = {}
        self.queued_bytes = 0  # queued plus handed to the writer and not yet written
        self._in_flight_bytes = 0  # the writer's current batch
        self._in_flight_first = 0  # the size of its first packet
        self._waiting_first = 0  # the size of the first packet queued since the writer's poll
        self._in_flight_ping = False
        self._ping_written = False  # the outstanding PING reached the transport
        self._early_pong = False  # a PONG came while its PING was still on its way out
        self._transport = None  # the WebSocket while this socket is on that transport
        self._cut = False
        self.opened_at = time.monotonic()
        _unauthenticated[sid] = self.opened_at

    # --- the queue, made on first use -------------------------------------------------------

    @property
    def queue(self) -> Any:
        """Engine.IO's queue of packets to send, made by the first use that needs one.

        A gevent JoinableQueue is 2.5 KiB; a WebSocket socket whose writer is idle has nothing
        queued (direct writes), and lazy_writer lets it go then (LazyWriterSocket). Every use
        of Engine.IO's (put, get, join) goes through here; a look that must not make one:
        `_queued_count`.
        """
        queue = self._queue
        if queue is None:
            with _making_queue:  # threading mode: two first uses make one queue
                queue = self._queue
                if queue is None:
                    queue = self._queue = self.server.create_queue()
        return queue

    @queue.setter
    def queue(self, queue: Any) -> None:
        self._queue = queue

    def _queued_count(self) -> int:
        """How many items the queue holds (0 when there is none), without making one."""
        queue = self._queue
        return 0 if queue is None else queue.qsize()

    # --- bytes queued ------------------------------------------------------------------------

    def send(self, pkt: eio_packet.Packet) -> None:
        if not self.check_ping_timeout():
            return None
        if pkt.packet_type == eio_packet.PING:
            self._ping_written = self._early_pong = False
        self._enqueue(pkt, packet_bytes(pkt))
        return None

    def _enqueue(self, item: Any, size: int) -> None:
        """Queue an item for the writer, counting its bytes; past the bound, cut the socket.

        The bound is on what waits behind the packet at the head of the line: that one is
        admitted whatever its size, because a reply may be larger than the bound (a page of
        100 messages of history is up to 4.8 MB) and a client that reads must get it. So a
        socket holds at most one packet plus MAX_SOCKET_QUEUE_BYTES.
        """
        if self._cut:
            return
        head = self._in_flight_first if self._in_flight_bytes else self._waiting_first
        behind = self.queued_bytes - head
        if self.queued_bytes and behind + size > self.max_queue_bytes:
            self.cut(
                "send_queue",
                f"{behind} bytes queued behind the {head} being sent, {size} more refused "
                f"(MAX_SOCKET_QUEUE_BYTES={self.max_queue_bytes})",
            )
            return
        if self.queued_bytes <= self._in_flight_bytes:  # nothing waiting: this one is first
            self._waiting_first = size
        self.queued_bytes += size
        self.queue.put(item)

    def poll(self) -> list[Any]:
        # The writer calls poll() again only after it wrote the previous batch: those bytes
        # have left the worker's memory for the kernel's.
        self._written()
        packets = super().poll()
        self._in_flight_bytes = sum(packet_bytes(p) for p in packets if p is not None)
        self._in_flight_first = packet_bytes(packets[0]) if packets else 0
        self._waiting_first = 0  # poll() takes everything queued
        self._in_flight_ping = any(
            getattr(p, "packet_type", None) == eio_packet.PING for p in packets
        )
        if self._transport is None:
            # A long-poll GET writes its packets into its response at once: the client can
            # answer them before it sends its next GET.
            self._written()
        return packets

    def _written(self) -> None:
        self.queued_bytes = max(0, self.queued_bytes - self._in_flight_bytes)
        self._in_flight_bytes = self._in_flight_first = 0
        if self._in_flight_ping:
            self._ping_written = True
            self._in_flight_ping = False
            if self._early_pong:  # the client answered while the writer was mid-batch
                self._early_pong = False
                self._take_pong()

    # --- liveness ----------------------------------------------------------------------------

    def receive(self, pkt: eio_packet.Packet) -> None:
        if pkt.packet_type != eio_packet.PONG:
            return super().receive(pkt)
        if not self.last_ping:  # no PING outstanding: Engine.IO ignores it too
            metrics.protocol_errors.labels("unanswered_pong").inc()
        elif self._ping_written:
            self._take_pong()
        else:
            # Its PING is queued, or in the batch the writer is still writing: the PONG
            # counts once that batch is written (a client that never reads never gets there).
            self._early_pong = True
        return None

    def _take_pong(self) -> None:
        self._ping_written = False
        super().receive(eio_packet.Packet(eio_packet.PONG))

    def check_ping_timeout(self) -> bool:
        if self.closed:
            return super().check_ping_timeout()  # raises SocketIsClosedError
        last_ping = self.last_ping
        if last_ping and time.time() - last_ping > self.server.ping_timeout:
            self.cut("ping_timeout", "no PONG to a PING it was sent")
            return False
        return True

    # --- cutting -----------------------------------------------------------------------------

    def cut(self, reason: str, detail: str) -> None:
        """Close this session's transport now: the queue emptied, the connection shut down.

        No CLOSE packet (Socket.IO clients reconnect). Engine.IO's close, which runs the
        disconnect handlers (they may wait on Redis), runs in a task of its own, so the
        emitting task that found the queue full is not held up.
        """
        if self._cut or self.closed:
            return
        self._cut = True
        _unauthenticated.pop(self.sid, None)
        metrics.sockets_cut.labels(reason).inc()
        log.warning("closing session %s: %s", self.sid, detail)
        take_all_queued(self)
        self.queued_bytes = self._in_flight_bytes
        tcp = _tcp_socket(self._transport)
        if tcp is not None:
            with contextlib.suppress(OSError):  # already gone
                tcp.shutdown(std_socket.SHUT_RDWR)
        self.server.start_background_task(self._close_cut)

    def _close_cut(self) -> None:
        try:
            self.close(wait=False, abort=True, reason=self.server.reason.SERVER_DISCONNECT)
        except Exception:
            log.exception("closing session %s failed", self.sid)
        self.server.sockets.pop(self.sid, None)

    def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        _unauthenticated.pop(self.sid, None)
        return super().close(wait=wait, abort=abort, reason=reason)

    # --- the WebSocket transport -------------------------------------------------------------

    # True once the open WebSocket was handed to a parked reader (lazy_writer, parking.py):
    # the handler returned, the transport lives on until `_websocket_ended`.
    _parked = False

    def _websocket_handler(self, ws: Any) -> Any:
        self._transport = ws
        try:
            return super()._websocket_handler(CheckedWebSocket(ws, self.sid))
        finally:
            if not self._parked:
                self._websocket_ended()

    def _websocket_ended(self) -> None:
        """The WebSocket transport ended: when its handler returns, or its parked reader ends.

        Subclasses forget their hold on the transport here, then call this.
        """
        self._transport = None


class CheckedWebSocket:
    """The transport Engine.IO reads from, closing the connection on a message that is no packet."""

    def __init__(self, ws: Any, sid: str) -> None:
        self._ws = ws
        self._sid = sid

    def wait(self) -> str | bytes | None:
        message = self._ws.wait()
        if message is None:
            return None
        problem = engineio_problem(message)
        if problem is not None:
            refused("undecodable", problem, self._sid)
            self._ws.close()
            return None
        return message

    def send(self, message: str | bytes) -> Any:
        return self._ws.send(message)

    def close(self) -> Any:
        return self._ws.close()

    def __getattr__(self, name: str) -> Any:
        # Engine.IO sets its read timeout on the transport's `_sock` or `socket`.
        return getattr(self._ws, name)


def _tcp_socket(ws: Any) -> Any:
    """The TCP socket under a WebSocket transport (gevent-websocket or eventlet), or None."""
    if ws is None:
        return None
    inner = getattr(ws, "_sock", None)  # gevent: Engine.IO's wrapper of gevent-websocket's
    handler = getattr(inner, "handler", None)
    if handler is not None:
        return getattr(handler, "socket", None)
    tcp = getattr(ws, "socket", None)  # eventlet's WebSocket
    return tcp if hasattr(tcp, "shutdown") else None


# Held while a socket makes its queue (LimitedSocket.queue); one for all sockets. Under gevent
# and eventlet nothing in it switches; it matters for Engine.IO's threading mode (tests, tools).
_making_queue = threading.Lock()


# --- time to authenticate --------------------------------------------------------------------

# Sessions not yet authenticated, oldest first: sid -> when it opened (monotonic).
_unauthenticated: OrderedDict[str, float] = OrderedDict()


def sweep(sio_server: socketio.Server, now: float | None = None) -> int:
    """Cut sessions that have not connected to a namespace in time; returns how many."""
    now = time.monotonic() if now is None else now
    deadline = now - LimitedSocket.auth_timeout_seconds
    eio = sio_server.eio
    cut = 0
    while _unauthenticated:
        sid, opened = next(iter(_unauthenticated.items()))
        if opened > deadline:
            break
        del _unauthenticated[sid]
        sock = eio.sockets.get(sid)
        if not isinstance(sock, LimitedSocket) or sock.closed or sock.closing:
            continue
        if sio_server.manager.sid_from_eio_sid(sid, "/") is not None:
            continue  # authenticated (the namespace's connect handler accepted its token)
        sock.cut("unauthenticated", f"no Socket.IO CONNECT within {sock.auth_timeout_seconds} s")
        cut += 1
    return cut


def start_sweeper(socketio: Any) -> None:
    """One task per worker cutting sessions that did not authenticate in time."""

    def run() -> None:
        while True:
            socketio.sleep(SWEEP_EVERY_SECONDS)
            try:
                sweep(socketio.server)
            except Exception:
                log.exception("the unauthenticated-session sweep failed")

    socketio.start_background_task(run)


def install(max_queue_bytes: int, auth_timeout_seconds: float) -> None:
    """Make Engine.IO create LimitedSocket (or direct_write's subclass) for every session.

    Raises upstream.UntestedUpstream on a python-engineio outside the tested range.
    """
    upstream.require("python-engineio", "socket_limits (a subclass of engineio.socket.Socket)")
    LimitedSocket.max_queue_bytes = max_queue_bytes
    LimitedSocket.auth_timeout_seconds = auth_timeout_seconds
    if not issubclass(engineio.socket.Socket, LimitedSocket):
        engineio.socket.Socket = LimitedSocket
