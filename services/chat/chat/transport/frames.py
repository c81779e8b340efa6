"""Reading and writing WebSocket frames under gevent, within a size limit.

gevent-websocket reads a whole frame, of whatever length the client announces, before
Engine.IO looks at its size (max_http_buffer_size is checked only afterwards), accumulates
continuation frames without a bound, and unmasks byte by byte in Python: one unauthenticated
client streaming a frame that announced 2 GiB kept a worker reading (and stalled it for
seconds once it stopped). `BoundedWebSocket` refuses a frame or message above
`max_message_bytes` before its payload is read, refuses reserved bits, and unmasks in one
C-level XOR.

On the way out it writes a broadcast's frame built once (frame_cache.py) with one `send()`,
and `send_nowait` is direct_write.py's write from the emitting greenlet.

What a client's frame may be, as this reader enforces it (tests/test_frames.py, on crafted
bytes). Every refusal ends the connection: `receive()` returns None after writing a close
frame without a status code (b"\x88\x00": gevent-websocket's close() drops its `code`):
- reserved bits (RSV1-3) set: ProtocolError from read_frame;
- a control frame (close, ping, pong) longer than 125 bytes or fragmented: ProtocolError
  from gevent-websocket's header decoder;
- a frame whose length, plus the data frames of its message before it, is above
  `max_message_bytes`: MessageTooBig, raised before its payload is read (control frames
  are compared alone and do not count towards the message);
- a payload cut short, text that is not UTF-8, or a message that is no Engine.IO packet;
- masked or not, a frame is taken (gevent-websocket never required the client's mask).
A client's own close frame is answered with a close and ends the connection too; one that
carries a reason is echoed with the repr of that reason as its payload (gevent-websocket's
doing, pinned as it is by test_a_client_close_with_a_reason_is_answered_with_the_reasons_repr).
"""

from __future__ import annotations

from typing import Any

from gevent.socket import socket as GeventSocket
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.websocket import MSG_ALREADY_CLOSED, MSG_SOCKET_DEAD, Header, WebSocket

from .frame_cache import FrameBytes, FrameCache
from .masking import unmask
from .packet_filter import engineio_problem, refused

# One per worker process: a broadcast is the same str object for every recipient.
frames = FrameCache()


class MessageTooBig(WebSocketError):
    """A frame whose message would be larger than the WebSocket's max_message_bytes."""


class BoundedWebSocket(WebSocket):
    """gevent-websocket's WebSocket, refusing frames and messages above a size.

    Built by gevent_server.ChatWebSocketHandler in place of the one gevent-websocket made
    (same arguments, plus the limit).
    """

    __slots__ = ("max_message_bytes", "message_bytes", "writing", "on_closed")

    def __init__(self, environ: Any, stream: Any, handler: Any, max_message_bytes: int) -> None:
        """`stream`: has `read(n) -> bytes` and `write(bytes)` (geventwebsocket's Stream)."""
        super().__init__(environ, stream, handler)
        self.max_message_bytes = max_message_bytes
        self.message_bytes = 0  # the message being read so far, the current frame included
        # True while a frame is being written (the writing greenlet may wait for the kernel
        # midway): send_nowait from another greenlet must not put bytes in the middle of it.
        self.writing = False
        # Called after close() once the WebSocket is parked (parking.ParkedReader.closed):
        # no reader is blocked on the socket to notice the close.
        self.on_closed: Any = None

    def close(self, code: int = 1000, message: bytes = b"") -> None:
        try:
            super().close(code, message)
        finally:  # also when writing the close frame raised (a timeout, a killed writer)
            if self.on_closed is not None:
                self.on_closed()

    def read_frame(self) -> tuple[Header, bytes]:
        header = Header.decode_header(self.stream)
        if header.flags:
            raise ProtocolError("reserved bits set")
        # Sized before the payload is read: a message is its first frame plus its
        # continuations (control frames are at most 125 bytes, checked by decode_header).
        size = header.length
        if header.opcode == self.OPCODE_CONTINUATION:
            size += self.message_bytes
        if size > self.max_message_bytes:
            raise MessageTooBig(f"a message of more than {size} bytes")
        if header.opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY, self.OPCODE_CONTINUATION):
            self.message_bytes = size
        if not header.length:
            return header, b""
        payload = self.raw_read(header.length)
        if len(payload) != header.length:
            raise WebSocketError("unexpected EOF reading a frame's payload")
        if header.mask:
            payload = unmask(payload, header.mask)
        return header, payload

    def send_frame(self, message: Any, opcode: int) -> None:
        """gevent-websocket's send_frame, with a broadcast's frame built once, not per socket.

        Engine.IO hands every recipient of an emit the same str object (the packet is
        encoded once per emit); gevent-websocket would encode it to UTF-8, build a header
        and concatenate the two again for each of them. FrameBytes (the rest of a frame
        direct_write began) are written as they are. Other frames (binary, close, ping)
        take gevent-websocket's own path.
        """
        self.writing = True
        try:
            if type(message) is FrameBytes:
                self._write(message)
            elif opcode != self.OPCODE_TEXT or not isinstance(message, str):
                super().send_frame(message, opcode)
            else:
                self._write(frames.text_frame(message))
        finally:
            self.writing = False

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
        if self.closed or self.writing:
            return None
        sock = self.handler.socket
        if type(sock) is not GeventSocket:  # e.g. TLS: its bytes are not ours to write
            return None
        frame = frames.text_frame(message)
        try:
            # A zero timeout: gevent's send tries once and raises instead of waiting for
            # the socket to become writable (test_upstream_gevent_send_*). types-gevent
            # copies the standard library's signature, without gevent's `timeout`.
            sent = sock.send(frame, 0, timeout=0.0)  # type: ignore[call-arg]
        except OSError:  # BlockingIOError included
            return None
        return frame[sent:]

    def receive(self) -> str | bytes | bytearray | None:
        # gevent-websocket's receive closes the connection and returns None on a protocol
        # error and on any socket.error, MessageTooBig included (a WebSocketError is one).
        message = super().receive()
        # A packet Engine.IO cannot decode would raise out of its WebSocket loop (a
        # traceback per packet): refuse it here, like any other broken frame.
        problem = None if message is None else engineio_problem(message)
        if problem is not None:
            refused("undecodable", problem, str(self.handler.client_address))
            self.close()
            return None
        return message
