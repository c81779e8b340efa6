"""Idle WebSockets parked on a watcher: no greenlet per connection while nothing arrives (gevent).

pywsgi serves each connection on a greenlet of its own, and gevent-websocket reads the
WebSocket on that greenlet for the connection's whole life. An idle connection therefore kept
a greenlet parked in `recv()`: its saved C stack (6.5 KiB), the CPython 3.11 data-stack pages
its 33 frames reached (pywsgi, Flask-SocketIO and Engine.IO layers, two pages), the greenlet
and pywsgi's handler with its parsed request: most of an idle connection's memory
(docs/BENCHMARKS.md, "Connection density").

Once the WebSocket is open (upgrade or handshake done, lazy_writer.py), `park()` hands the
connection to a `ParkedReader` and the request's greenlet returns through the WSGI layers and
ends, leaving the TCP socket open (ChatWebSocketHandler and ChatWSGIServer skip their close
for a parked socket). The reader keeps one libev read watcher on the socket. When the socket
becomes readable, a greenlet is started that reads and handles what arrived, one message
after another as Engine.IO's reader loop does (lazy_writer's `_read_one`), and ends once no
bytes are left over; the watcher is then started again. A message that arrives in pieces is
finished on that greenlet (it waits for the rest, as the old reader did).

What is kept:
- Order and back-pressure: the watcher is stopped while a greenlet reads, so one greenlet at
  a time reads a connection, and nothing is read while a message is handled.
- The end: a failed read, the client's close frame or EOF, or the WebSocket being closed by
  this side (the writer after Engine.IO's close, a refused frame) runs Engine.IO's end of the
  connection (lazy_writer's `_end_websocket`) once, then closes the TCP socket, as pywsgi
  would have when the request's greenlet ended.
- The drain: a parked connection counts in `chat_handlers_in_progress` as its request did.

Only a plain gevent TCP socket under a frames.BoundedWebSocket served by
gevent_server.ChatWebSocketHandler is parked: TLS keeps bytes the fd watcher cannot see, and
other transports (eventlet) keep their reader as before.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any

import gevent
from gevent.socket import socket as GeventSocket

from .. import metrics
from .handler_task import handle_on_this_greenlet

log = logging.getLogger(__name__)

WEBSOCKET_ENVIRON_KEYS = (
    "HTTP_ORIGIN",
    "HTTP_SEC_WEBSOCKET_PROTOCOL",
    "HTTP_SEC_WEBSOCKET_VERSION",
    "PATH_INFO",
)

# The most read from the socket in one recv(): a few chat events, or a PONG (7 bytes).
RECV_BYTES = 4096


class ParkedStream:
    """What a parked BoundedWebSocket reads frames from and writes to (gevent-websocket's Stream).

    `read(n)` returns n bytes, from what a previous recv() left over first, waiting on the
    socket for the rest (fewer only at EOF or error, which gevent-websocket reports as a broken
    frame); `left_over` says whether a whole recv() has not been consumed yet.
    """

    __slots__ = ("sock", "left_over")

    def __init__(self, sock: GeventSocket, left_over: bytes) -> None:
        self.sock = sock
        self.left_over = left_over

    def read(self, n: int) -> bytes:
        data = self.left_over
        if len(data) < n:
            # A large message arrives in many pieces: joined once, not copied per piece.
            pieces, have = [data], len(data)
            while have < n:
                try:
                    chunk = self.sock.recv(max(n - have, RECV_BYTES))
                except OSError:
                    chunk = b""
                if not chunk:
                    self.left_over = b""
                    return b"".join(pieces)
                pieces.append(chunk)
                have += len(chunk)
            data = b"".join(pieces)
        self.left_over = data[n:]
        return data[:n]

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)


class ParkedHandler:
    """What a parked WebSocket keeps of pywsgi's handler: the socket, the peer, the server."""

    __slots__ = ("socket", "client_address", "server", "logger")

    def __init__(self, handler: Any) -> None:
        self.socket = handler.socket
        self.client_address = handler.client_address
        self.server = handler.server
        self.logger = handler.logger


class ParkedReader:
    """One parked WebSocket: a read watcher, and a greenlet only while bytes are to be read."""

    __slots__ = ("eio_socket", "ws", "sock", "stream", "watcher", "ended", "reading", "__weakref__")

    def __init__(self, eio_socket: Any, ws: Any, stream: ParkedStream) -> None:
        self.eio_socket = eio_socket  # lazy_writer.LazyWriterHandler
        self.ws = ws  # what Engine.IO reads through (socket_limits.CheckedWebSocket)
        self.sock = sock = stream.sock
        self.stream = stream
        self.ended = False
        self.reading = False  # a greenlet is reading or handling what arrived
        self.watcher = gevent.get_hub().loop.io(sock.fileno(), 1)

    def start(self) -> None:
        if self.stream.left_over:  # read ahead before parking: the fd will not say so
            gevent.spawn_raw(self._read)
        else:
            self.watcher.start(self._readable)

    def _readable(self) -> None:
        # On the hub: no waiting here. Stopped until the greenlet has read what arrived.
        self.watcher.stop()
        gevent.spawn_raw(self._read)

    def _read(self) -> None:
        eio_socket, ws, stream = self.eio_socket, self.ws, self.stream
        handle_on_this_greenlet()  # this greenlet ends soon: no task per message
        self.reading = True
        try:
            while not self.ended:
                if not eio_socket._read_one(ws):
                    self.end()
                    return
                if not stream.left_over:
                    break
        except BaseException:
            self.end()
            raise
        finally:
            self.reading = False
        if not self.ended:
            self.watcher.start(self._readable)

    def closed(self) -> None:
        """The WebSocket was closed on this side (by the writer, a refusal, Engine.IO's close).

        While a greenlet reads, it ends the connection itself, after the message it is
        handling, as Engine.IO's reader loop did (so the disconnect handlers never run during
        that connection's event handler): the socket is shut down, which wakes it if it waits
        for the rest of a frame. Otherwise the end runs on a greenlet of its own.
        """
        if self.ended:
            return
        if self.reading:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        else:
            gevent.spawn_raw(self.end)

    def end(self) -> None:
        """Engine.IO's end of the connection, once; then the TCP socket is closed."""
        if self.ended:
            return
        self.ended = True
        self.watcher.stop()
        self.watcher.close()
        try:
            self.eio_socket._parked_reader_ended()
        except Exception:
            log.exception("%s: ending a parked WebSocket failed", self.eio_socket.sid)
        finally:
            _close_tcp(self.sock)
            metrics.handlers_in_progress.dec()
            metrics.websockets_parked.dec()


def _close_tcp(sock: GeventSocket) -> None:
    # As pywsgi's handler does when its request ends (WSGIHandler.handle): read out what the
    # client sent, so the close is a FIN rather than a reset (on the non-blocking socket under
    # gevent's). Then shut it down, which wakes a greenlet still waiting in it for the rest of
    # a frame (gevent's close would not while a reader made by makefile() is still referenced,
    # here from the request's environ), and close both gevent's socket and the one under it.
    inner = getattr(sock, "_sock", None)
    with contextlib.suppress(OSError):
        if inner is not None:
            inner.recv(16384)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
    with contextlib.suppress(OSError):
        if inner is not None:
            inner.close()


def parkable(ws: Any) -> Any:
    """The BoundedWebSocket under Engine.IO's transport `ws` if it can be parked, else None."""
    from .frames import BoundedWebSocket  # gevent-websocket: imported in gevent mode only

    bounded = getattr(ws, "_sock", None)
    if not isinstance(bounded, BoundedWebSocket) or bounded.closed:
        return None
    handler = bounded.handler
    if not hasattr(handler, "park") or type(getattr(handler, "socket", None)) is not GeventSocket:
        return None
    return bounded


def park(eio_socket: Any, ws: Any) -> bool:
    """Hand the open WebSocket `ws` of `eio_socket` to a ParkedReader; False if it cannot be.

    `ws`: what Engine.IO reads through (its gevent wrapper, or socket_limits' CheckedWebSocket
    around it). On True the caller returns at once: its request's greenlet ends, the
    connection lives on.
    """
    bounded = parkable(ws)
    if bounded is None:
        return False
    handler = bounded.handler
    stream = ParkedStream(handler.socket, handler.park())
    reader = ParkedReader(eio_socket, ws, stream)
    bounded.stream = stream
    bounded.raw_read = stream.read
    bounded.raw_write = stream.write
    bounded.handler = ParkedHandler(handler)
    # gevent-websocket's WebSocket reads these of pywsgi's environ (origin, protocol, version,
    # path); the rest of it, parsed headers included, goes with the handler.
    environ = bounded.environ
    bounded.environ = {key: environ[key] for key in WEBSOCKET_ENVIRON_KEYS if key in environ}
    bounded.on_closed = reader.closed
    metrics.handlers_in_progress.inc()
    metrics.websockets_parked.inc()
    reader.start()
    return True
