"""The eventlet WSGI server's protocol (a deadline on each request's head) and its WebSocket
message bound (eventlet bounds each frame, not a whole message) and C-level unmasking."""

from __future__ import annotations

from typing import Any

import eventlet
import eventlet.wsgi
from eventlet import websocket

from . import upstream
from .http_server import peer, request_head_seconds
from .masking import unmask_from
from .packet_filter import refused


class HeadDeadlineProtocol(eventlet.wsgi.HttpProtocol):
    """eventlet.wsgi's HttpProtocol with the deadline on a request's head (as under gevent)."""

    # Set by serve() from HEADER_TIMEOUT_SECONDS (one server per worker process).
    header_timeout_seconds = 10.0
    requests_read = 0
    _head_timer: Any = None

    def handle_one_request(self) -> Any:
        seconds = request_head_seconds(self.header_timeout_seconds, self.requests_read)
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

    def parse_request(self) -> Any:
        try:
            return super().parse_request()
        finally:
            self._head_timer.cancel()


class BoundedMessage(websocket.RFC6455WebSocket.Message):
    """eventlet's WebSocket message, refusing data past its max_frame_length (close 1009)."""

    bounded = True

    def push(self, data: bytes, final: bool = False) -> Any:
        self.size = getattr(self, "size", 0) + len(data)
        if self.size > self.max_frame_length:
            raise websocket.FailedConnectionError(
                1009, f"message above {self.max_frame_length} bytes"
            )
        return super().push(data, final)


def bound_eventlet_messages() -> None:
    """Bound a whole WebSocket message, not only each frame, under eventlet.

    eventlet checks each frame against max_frame_length (Engine.IO sets it to
    max_http_buffer_size) but appends continuation frames to a message without a bound: a
    message that never ends was read forever (30 MB in one test). Its `Message` class (an
    attribute of RFC6455WebSocket, created per message by `_recv_frame`) becomes
    BoundedMessage, whose `push` refuses data past that length, which eventlet turns into a
    close with status 1009. test_upstream_eventlet_* pin what this relies on (eventlet 0.41).
    Raises upstream.UntestedUpstream on an eventlet outside the tested range.
    """
    upstream.require("eventlet", "eventlet_server (RFC6455WebSocket.Message, _apply_mask)")
    websocket.RFC6455WebSocket.Message = BoundedMessage
    # eventlet unmasks a client's payload one byte at a time in Python (as gevent-websocket
    # does; frames.py replaces that too): one C-level XOR instead.
    websocket.RFC6455WebSocket._apply_mask = staticmethod(unmask_from)
