"""The gevent WSGI server: gevent-websocket's handler with a deadline on each request's head,
the origin checked before an upgrade, and BoundedWebSocket (frames.py) for every WebSocket."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

import gevent
from flask import Flask
from gevent import pywsgi
from geventwebsocket.handler import WebSocketHandler

from . import upstream
from .frames import BoundedWebSocket
from .http_server import peer, request_head_seconds
from .packet_filter import refused

# The buffer of each connection's reader (pywsgi's `rfile`). pywsgi makes it with
# `sock.makefile('rb', -1)`: 8 KiB, kept for a WebSocket's whole life (gevent-websocket reads
# its frames through it), the largest single item of an idle connection's memory
# (docs/BENCHMARKS.md, "Connection density"). A PONG frame is 7 bytes, a chat event a few
# hundred; a read larger than the buffer goes to the socket directly, and a request head of
# a few KiB takes a few more recv() calls.
READ_BUFFER_BYTES = 1024


def use_small_read_buffer(handler: Any) -> None:
    """Give a new pywsgi handler a reader with a READ_BUFFER_BYTES buffer instead of 8 KiB.

    Called from the handler's __init__, before the connection's first read, so the reader it
    replaces holds no bytes; that one is closed (releasing its reference to the socket, as
    pywsgi's own close would). A handler whose `rfile` is not a buffered reader over its
    socket is left as it is (test_upstream_gevent_pywsgi_* in tests/test_gevent_server.py).
    """
    old = getattr(handler, "rfile", None)
    sock = getattr(handler, "socket", None)
    if old is None or sock is None or getattr(old, "raw", None) is None:
        return
    handler.rfile = sock.makefile("rb", READ_BUFFER_BYTES)
    old.close()


class _Parked:
    """Stands in for a parked WebSocket in gevent-websocket's `run_websocket`, whose `finally`
    closes `self.websocket` unless it is closed: a parked one lives on (parking.py)."""

    closed = True


PARKED = _Parked()


class ChatWebSocketHandler(WebSocketHandler):
    """gevent-websocket's handler: request heads within a deadline, bounded WebSockets, and
    WebSockets parked (parking.py) once open, the handler's greenlet ending."""

    requests_read = 0
    _head_timer: Any = None
    # True once park() gave the connection to a parking.ParkedReader.
    parked = False

    def __init__(self, sock: Any, address: Any, server: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, address, server, *args, **kwargs)
        use_small_read_buffer(self)

    def handle_one_request(self) -> Any:
        # The request line and headers must arrive within the deadline (slowloris); the
        # timer is cancelled once they have (read_request), before the application runs.
        seconds = request_head_seconds(self.server.header_timeout_seconds, self.requests_read)
        self.requests_read += 1
        timer = self._head_timer = gevent.Timeout.start_new(seconds)
        try:
            result = super().handle_one_request()
            if self.parked:
                # The connection is the parked reader's: pywsgi's `handle` closes only a
                # socket it still holds, and the server's do_close skips it (PARKED_SOCKETS).
                self.socket = None
                return None
            return result
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            refused("slow_headers", f"no request head within {seconds} s", peer(self))
            return None  # the connection is closed
        finally:
            timer.close()

    def read_request(self, raw_requestline: str) -> Any:
        try:
            return super().read_request(raw_requestline)
        finally:
            self._head_timer.close()

    def park(self) -> bytes:
        """Give the open WebSocket's connection up to a parked reader (parking.park).

        Returns the bytes the request's reader had read ahead of the WebSocket's frames so
        far (the parked reader reads them first), without waiting for more. From here the
        handler's greenlet returns as soon as the application does, and closes nothing.
        """
        sock: Any = self.socket
        timeout = sock.timeout
        sock.settimeout(0.0)  # a read of what is buffered, and nothing from the network
        try:
            read_ahead = self.rfile.read1(1 << 16) or b""
        except OSError:
            read_ahead = b""
        finally:
            sock.settimeout(timeout)
        self.parked = True
        self.server.parked_sockets.add(id(sock))
        self.websocket = PARKED  # gevent-websocket's run_websocket closes nothing then
        return read_ahead

    def log_request(self) -> None:
        # gevent-websocket's own log_request writes every request but an upgrade at INFO
        # through its logger, ignoring the server's `log`: ACCESS_LOG=0 turned nothing off.
        if self.server.access_log:
            super().log_request()

    def upgrade_connection(self) -> Any:
        result = super().upgrade_connection()
        accepted = getattr(self, "websocket", None)
        if accepted is not None and not isinstance(accepted, BoundedWebSocket):
            # gevent-websocket builds its own WebSocket class here and has no hook for
            # another: build ours from the same stream (nothing was read or written on it
            # yet) and retire its object without a close frame (test_upstream_gevent_*).
            ws = BoundedWebSocket(
                self.environ, accepted.stream, self, self.server.max_websocket_message_bytes
            )
            accepted.closed = True  # its __del__ closes it: no close frame once closed
            self.websocket = ws
            self.environ["wsgi.websocket"] = ws
        if accepted is not None:
            # Each frame goes out at once: with Nagle's algorithm a small frame written while
            # the previous one is unacknowledged waits for the ACK, which the peer may delay
            # by up to 40 ms (Linux). Node's ws sets the same on every WebSocket.
            tcp: Any = self.socket
            with contextlib.suppress(OSError):
                tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return result


class ChatWSGIServer(pywsgi.WSGIServer):
    """gevent's WSGIServer with the settings its handler reads (set by make_server)."""

    # The largest WebSocket message accepted (MAX_HTTP_BUFFER_SIZE), in bytes.
    max_websocket_message_bytes: int = 0
    # HEADER_TIMEOUT_SECONDS: a request's line and headers must arrive within it.
    header_timeout_seconds: float = 0.0
    # gevent-websocket's hook: True serves the request as plain HTTP instead of upgrading it.
    pre_start_hook: Callable[[Any], bool] | None = None
    # ACCESS_LOG: one line per request (not per WebSocket upgrade) in the worker's log.
    access_log: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # id() of each connection whose handler parked it and has not ended yet: the socket
        # is the parked reader's to close.
        self.parked_sockets: set[int] = set()

    def do_close(self, sock: Any, *args: Any) -> None:
        if id(sock) in self.parked_sockets:
            self.parked_sockets.discard(id(sock))
            return
        super().do_close(sock, *args)


def make_server(
    app: Flask,
    host: str,
    port: int,
    max_message_bytes: int,
    header_timeout_seconds: float,
    pre_start_hook: Callable[[Any], bool] | None,
    access_log: bool,
) -> ChatWSGIServer:
    """A gevent WSGIServer for `app` on host:port, not started.

    `pre_start_hook(handler) -> bool`: True serves the request as plain HTTP instead of
    upgrading it (gevent-websocket's hook; http_server.plain_http_for_foreign_origin).
    Raises upstream.UntestedUpstream on a gevent or gevent-websocket outside the tested range.
    """
    upstream.require("gevent-websocket", "frames.BoundedWebSocket and ChatWebSocketHandler")
    upstream.require("gevent", "ChatWebSocketHandler (the request head deadline)")
    server = ChatWSGIServer(
        (host, port),
        app,
        handler_class=ChatWebSocketHandler,
        log="default" if access_log else None,
    )
    server.max_websocket_message_bytes = max_message_bytes
    server.header_timeout_seconds = header_timeout_seconds
    server.pre_start_hook = pre_start_hook
    server.access_log = access_log
    return server
