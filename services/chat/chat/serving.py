"""How a worker process serves: its web server, the WebSocket limits, and the drain on SIGTERM.

With green.py, the one place that knows gevent and eventlet by name. `python -m chat` builds
the server here instead of calling `socketio.run`, for three reasons:

- WebSocket limits under gevent. gevent-websocket reads a whole frame, of whatever length
  the client announces, before Engine.IO looks at its size (max_http_buffer_size is checked
  only afterwards), accumulates continuation frames without a bound, and unmasks byte by
  byte in Python: one unauthenticated client streaming a frame that announced 2 GiB kept a
  worker reading (and stalled it for seconds once it stopped). Here a frame or message above
  max_http_buffer_size closes the connection before its payload is read, and
  unmasking is one C-level XOR. (eventlet's server has its own frame limit, which Engine.IO
  sets to the same size; here its whole messages are bounded too, and unmasked in C:
  `_bound_eventlet_messages`.)
- Origin before upgrade under gevent. gevent-websocket answers `101 Switching Protocols`
  before the application runs, so Engine.IO's same-origin check could only close a
  cross-site WebSocket after accepting it. An upgrade from an origin Engine.IO would refuse
  is served as plain HTTP instead, where Engine.IO answers 400 "Not an accepted origin."
  (eventlet's server upgrades inside the application, after Engine.IO's check.)
- A drain on SIGTERM (see Drain).
- A deadline on each request's line and headers (HEADER_TIMEOUT_SECONDS; slowloris), in both
  servers; eventlet's server also runs with debug off, which sent a 500's traceback to the
  client. The per-socket limits (bytes queued, liveness, time to authenticate) are
  socket_limits.py's, the same in both modes.
- Direct writes under gevent (DIRECT_WEBSOCKET_WRITES, direct_write.py): a message frame is
  written by the emitting greenlet when the socket's writer is idle, without Engine.IO's
  queue hop; `BoundedWebSocket.send_nowait` is that write, never waiting for the kernel.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from flask import Flask

from . import metrics

log = logging.getLogger(__name__)

# How often the drain looks whether the last handlers have finished.
_DRAIN_POLL_SECONDS = 0.05


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
        socketio,
        on_exit: Callable[[], None],
        seconds: float,
        events: EventGate,
    ) -> None:
        self.socketio, self.on_exit, self.seconds = socketio, on_exit, seconds
        self.events = events
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
        started = time.monotonic()
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
            time.monotonic() - started,
            in_progress(),
        )
        return len(sockets)

    def _wait(self, busy: Callable[[], bool], deadline: float) -> None:
        """Poll until `busy()` is false or the deadline passes."""
        while busy() and time.monotonic() < deadline:
            self.socketio.sleep(_DRAIN_POLL_SECONDS)

    def wsgi_middleware(self, wsgi_app):
        """Count requests in flight; while draining, close connections and refuse sessions.

        The result is passed through untouched (eventlet recognises a WebSocket response by
        identity). A WebSocket or long-poll request runs inside the call, a REST response is
        computed there: counting the call counts what the drain must wait for.
        """

        def app(environ: dict, start_response):
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
            metrics.handlers_in_progress.inc()
            try:
                return wsgi_app(environ, start_response)
            finally:
                metrics.handlers_in_progress.dec()

        return app


def _closing(start_response):
    def closing_start_response(status, headers, exc_info=None):
        headers = [(k, v) for k, v in headers if k.lower() != "connection"]
        return start_response(status, [*headers, ("Connection", "close")], exc_info)

    return closing_start_response


def in_progress() -> int:
    """Requests and Socket.IO event handlers running right now in this worker."""
    return int(metrics.registry.get_sample_value("chat_handlers_in_progress") or 0)


def _opens_engineio_session(environ: dict) -> bool:
    return environ.get("PATH_INFO", "").startswith("/socket.io") and "sid=" not in environ.get(
        "QUERY_STRING", ""
    )


def serve(app: Flask, socketio, mode: str, drain: Drain, access_log: bool) -> None:
    """Serve until drained (the drain ends the process); threading mode runs Werkzeug."""
    cfg = app.config
    host, port = cfg["HOST"], cfg["PORT"]
    from . import socket_limits

    socket_limits.start_sweeper(socketio)
    if mode == "gevent":
        if cfg["DIRECT_WEBSOCKET_WRITES"]:
            from . import direct_write

            direct_write.install()
            log.info("direct WebSocket writes: on (DIRECT_WEBSOCKET_WRITES)")
        server = _gevent_server(app, socketio, host, port, cfg["MAX_HTTP_BUFFER_SIZE"], access_log)
        server.header_timeout_seconds = cfg["HEADER_TIMEOUT_SECONDS"]
        drain.close_listener = server.close
        server.serve_forever()
    elif mode == "eventlet":
        import eventlet
        import eventlet.wsgi

        _bound_eventlet_messages()
        listener = eventlet.listen((host, port))
        drain.close_listener = listener.close
        try:
            eventlet.wsgi.server(
                listener,
                app,
                log_output=access_log,
                # Its default sends a 500's traceback (paths, versions) to the client.
                debug=False,
                protocol=_eventlet_protocol(cfg["HEADER_TIMEOUT_SECONDS"]),
            )
        except OSError:
            if not drain.draining:
                raise
    else:  # development only: no drain, SIGTERM ends the process at once
        socketio.run(app, host=host, port=port, log_output=access_log, allow_unsafe_werkzeug=True)
        return
    while True:  # the listener is closed: the drain finishes and exits the process
        socketio.sleep(1)


def _gevent_server(
    app: Flask, socketio, host: str, port: int, max_message_bytes: int, access_log: bool
):
    from gevent import pywsgi

    server = pywsgi.WSGIServer(
        (host, port),
        app,
        handler_class=_websocket_handler_class(),
        log="default" if access_log else None,
    )
    server.max_websocket_message_bytes = max_message_bytes
    server.pre_start_hook = _plain_http_for_foreign_origin(socketio)
    return server


def _plain_http_for_foreign_origin(socketio) -> Callable[[Any], bool]:
    def hook(handler) -> bool:
        """True: serve this request as plain HTTP (gevent-websocket's pre_start_hook)."""
        environ = handler.environ
        origin = environ.get("HTTP_ORIGIN")
        if not origin or environ.get("HTTP_UPGRADE", "").lower() != "websocket":
            return False
        eio = socketio.server.eio
        if eio.cors_allowed_origins == []:  # Engine.IO's switch for "no origin check"
            return False
        # Engine.IO's own policy (same-origin by default, else the configured list), so the
        # two checks cannot disagree; test_abuse_origin pins this private API's behaviour.
        allowed = eio._cors_allowed_origins(environ)
        return allowed is not None and origin not in allowed

    return hook


def _websocket_handler_class():
    import gevent
    from gevent.socket import socket as GeventSocket
    from geventwebsocket.exceptions import ProtocolError, WebSocketError
    from geventwebsocket.handler import WebSocketHandler
    from geventwebsocket.websocket import MSG_ALREADY_CLOSED, MSG_SOCKET_DEAD, Header, WebSocket

    from .direct_write import FrameBytes
    from .realtime.hardening import engineio_problem, refused

    class MessageTooBig(WebSocketError):
        pass

    frames = FrameCache()

    class BoundedWebSocket(WebSocket):
        """gevent-websocket's WebSocket, refusing frames and messages above a size."""

        __slots__ = ()  # the same layout, so an accepted WebSocket can take this class

        def read_frame(self):
            header = Header.decode_header(self.stream)
            if header.flags:
                raise ProtocolError("reserved bits set")
            # Sized before the payload is read: a message is its first frame plus its
            # continuations (control frames are at most 125 bytes, checked by decode_header).
            handler = self.handler
            size = header.length
            if header.opcode == self.OPCODE_CONTINUATION:
                size += handler.websocket_message_bytes
            if size > handler.server.max_websocket_message_bytes:
                raise MessageTooBig(f"a message of more than {size} bytes")
            if header.opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY, self.OPCODE_CONTINUATION):
                handler.websocket_message_bytes = size
            if not header.length:
                return header, b""
            payload = self.raw_read(header.length)
            if len(payload) != header.length:
                raise WebSocketError("unexpected EOF reading a frame's payload")
            if header.mask:
                payload = _unmask(payload, header.mask)
            return header, payload

        def send_frame(self, message, opcode):
            """gevent-websocket's send_frame, with a broadcast's frame built once, not per socket.

            Engine.IO hands every recipient of an emit the same str object (the packet is
            encoded once per emit); gevent-websocket would encode it to UTF-8, build a header
            and concatenate the two again for each of them. FrameBytes (the rest of a frame
            direct_write began) are written as they are. Other frames (binary, close, ping)
            take gevent-websocket's own path.
            """
            # While a frame is being written (this greenlet may wait for the kernel midway),
            # send_nowait from another greenlet must not put bytes in the middle of it.
            handler = self.handler
            handler.websocket_writing = True
            try:
                if type(message) is FrameBytes:
                    self._write(message)
                elif opcode != self.OPCODE_TEXT or not isinstance(message, str):
                    super().send_frame(message, opcode)
                else:
                    self._write(frames.text_frame(message))
            finally:
                handler.websocket_writing = False

        def _write(self, frame: bytes) -> None:
            if self.closed:
                self.current_app.on_close(MSG_ALREADY_CLOSED)
                raise WebSocketError(MSG_ALREADY_CLOSED)
            sock = self.handler.socket
            try:
                # One send() almost always takes a whole chat frame; gevent's sendall() would
                # first ask the kernel for SO_SNDBUF (a getsockopt syscall per recipient,
                # ~7 % of a worker's CPU under fan-out load, py-spy) and arm a deadline.
                sent = sock.send(frame)
                if sent < len(frame):
                    sock.sendall(memoryview(frame)[sent:])
            except OSError:
                raise WebSocketError(MSG_SOCKET_DEAD) from None

        def send_nowait(self, message: str) -> bytes | None:
            """Write a text frame now if the kernel takes it, never waiting (direct_write).

            Returns the bytes the kernel did not take (b"" when it took all), or None when
            nothing was written: the WebSocket is closed, another greenlet is midway through
            a frame, the send buffer is full, or the send failed (the caller queues the
            message, so the writer meets the same error and ends the connection as before).
            """
            handler = self.handler
            if self.closed or handler.websocket_writing:
                return None
            sock = handler.socket
            if type(sock) is not GeventSocket:  # e.g. TLS: its bytes are not ours to write
                return None
            frame = frames.text_frame(message)
            try:
                # gevent's own socket.send would wait for the socket to become writable; its
                # OS socket is non-blocking, so this call returns at once.
                sent = sock._sock.send(frame)
            except OSError:  # BlockingIOError included
                return None
            return frame[sent:]

        def receive(self):
            try:
                message = super().receive()
            except MessageTooBig:
                # A plain close frame: gevent-websocket's close() ignores its `code` and
                # sends the repr of a bytes reason as the payload, which clients reject.
                self.close()
                return None
            # A packet Engine.IO cannot decode would raise out of its WebSocket loop (a
            # traceback per packet): refuse it here, like any other broken frame.
            problem = None if message is None else engineio_problem(message)
            if problem is not None:
                refused("undecodable", problem, str(self.handler.client_address))
                self.close()
                return None
            return message

    class ChatWebSocketHandler(WebSocketHandler):
        websocket_message_bytes = 0
        websocket_writing = False
        requests_read = 0
        _head_timer = None

        def handle_one_request(self):
            # The request line and headers must arrive within the deadline (slowloris); the
            # timer is cancelled once they have (read_request), before the application runs.
            seconds = request_head_seconds(self.server.header_timeout_seconds, self.requests_read)
            self.requests_read += 1
            timer = self._head_timer = gevent.Timeout.start_new(seconds)
            try:
                return super().handle_one_request()
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                refused("slow_headers", f"no request head within {seconds} s", peer(self))
                return None  # the connection is closed
            finally:
                timer.close()

        def read_request(self, raw_requestline):
            try:
                return super().read_request(raw_requestline)
            finally:
                self._head_timer.close()

        def upgrade_connection(self):
            result = super().upgrade_connection()
            websocket = getattr(self, "websocket", None)
            if websocket is not None:
                websocket.__class__ = BoundedWebSocket
            return result

    return ChatWebSocketHandler


# nginx keeps idle connections to the workers open for 60 s (its upstream keepalive_timeout):
# a wait for the next request on a kept-alive connection must outlast that, or nginx could
# send a request into a connection the worker is closing.
KEEPALIVE_IDLE_SECONDS = 75


def request_head_seconds(header_timeout: float, requests_read: int) -> float:
    """How long a connection may take to send a request's line and headers.

    The first request: HEADER_TIMEOUT_SECONDS from the connection's start. A later one on a
    kept-alive connection: the idle allowance (the wait for it includes idle time).
    """
    return header_timeout if requests_read == 0 else max(header_timeout, KEEPALIVE_IDLE_SECONDS)


def peer(handler) -> str:
    address = getattr(handler, "client_address", None)
    return str(address[0]) if isinstance(address, tuple) else str(address)


def _eventlet_protocol(header_timeout: float):
    """eventlet.wsgi's HttpProtocol with the deadline on a request's head (as under gevent)."""
    import eventlet
    import eventlet.wsgi

    from .realtime.hardening import refused

    class Protocol(eventlet.wsgi.HttpProtocol):
        requests_read = 0
        _head_timer = None

        def handle_one_request(self):
            seconds = request_head_seconds(header_timeout, self.requests_read)
            self.requests_read += 1
            timer = self._head_timer = eventlet.Timeout(seconds)
            try:
                return super().handle_one_request()
            except eventlet.Timeout as exc:
                if exc is not timer:
                    raise
                refused("slow_headers", f"no request head within {seconds} s", peer(self))
                self.close_connection = 1
                return None
            finally:
                timer.cancel()

        def parse_request(self):
            try:
                return super().parse_request()
            finally:
                self._head_timer.cancel()

    return Protocol


def _bound_eventlet_messages() -> None:
    """Bound a whole WebSocket message, not only each frame, under eventlet.

    eventlet checks each frame against max_frame_length (Engine.IO sets it to
    max_http_buffer_size) but appends continuation frames to a message without a bound: a
    message that never ends was read forever (30 MB in one test). Its `Message` class (an
    attribute of RFC6455WebSocket, created per message by `_recv_frame`) gets a `push` that
    refuses data past that length, which eventlet turns into a close with status 1009.
    test_upstream_socket_limits.py pins what this relies on (eventlet 0.41).
    """
    from eventlet import websocket

    base = websocket.RFC6455WebSocket.Message
    if getattr(base, "bounded", False):
        return

    class BoundedMessage(base):
        bounded = True

        def push(self, data, final=False):
            self.size = getattr(self, "size", 0) + len(data)
            if self.size > self.max_frame_length:
                raise websocket.FailedConnectionError(
                    1009, f"message above {self.max_frame_length} bytes"
                )
            return super().push(data, final)

    websocket.RFC6455WebSocket.Message = BoundedMessage
    # eventlet unmasks a client's payload one byte at a time in Python (as gevent-websocket
    # does; serving's gevent WebSocket replaces that too): one C-level XOR instead.
    websocket.RFC6455WebSocket._apply_mask = staticmethod(_unmask_from)


def _unmask_from(data: bytes, mask, length: int | None = None, offset: int = 0) -> bytes:
    """eventlet's `_apply_mask`: XOR `length` bytes of `data` with the 4-byte mask, whose
    position `offset` (a partial read's start within the payload) lines up with data[0]."""
    n = len(data) if length is None else length
    key = bytes(mask)
    turn = offset % 4
    return _unmask(bytes(data[:n]), key[turn:] + key[:turn])


class FrameCache:
    """Server-to-client WebSocket text frames of the last few str messages, by identity.

    Keyed by the message object itself (held, so its id cannot be reused): the same str
    sent to 1,000 sockets is one entry; a str equal but not identical is encoded again,
    which is only a missed saving. Bounded: entries leave in insertion order.
    """

    # Each socket's writer sends a broadcast shortly after the emit, but under load it may
    # lag by seconds while one-off frames (acks, pings) pass through too: 256 entries (a few
    # hundred KB) cover seconds of a busy worker's traffic. A miss only costs the encoding.
    SIZE = 256

    def __init__(self) -> None:
        self._frames: dict[int, tuple[str, bytes]] = {}

    def text_frame(self, message: str) -> bytes:
        entry = self._frames.get(id(message))
        if entry is not None and entry[0] is message:
            return entry[1]
        from geventwebsocket.websocket import Header, WebSocket

        payload = message.encode("utf-8")
        header = Header.encode_header(True, WebSocket.OPCODE_TEXT, b"", len(payload), 0)
        frame = bytes(header) + payload
        if len(self._frames) >= self.SIZE:
            del self._frames[next(iter(self._frames))]
        self._frames[id(message)] = (message, frame)
        return frame


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, in C (gevent-websocket loops over each byte in Python)."""
    n = len(payload)
    key = (bytes(mask) * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
