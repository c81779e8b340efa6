"""A broadcast's WebSocket frame, built once for all its recipients (gevent)."""

from __future__ import annotations

from geventwebsocket.websocket import Header, WebSocket


class FrameBytes(bytes):
    """Bytes of a WebSocket frame already built: written as they are, not framed again."""

    __slots__ = ()


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

    def __len__(self) -> int:
        """Frames held."""
        return len(self._frames)

    def text_frame(self, message: str) -> bytes:
        """The unmasked, final text frame carrying `message` as UTF-8: header + payload."""
        entry = self._frames.get(id(message))
        if entry is not None and entry[0] is message:
            return entry[1]
        payload = message.encode("utf-8")
        header = Header.encode_header(True, WebSocket.OPCODE_TEXT, b"", len(payload), 0)
        frame = bytes(header) + payload
        if len(self._frames) >= self.SIZE:
            del self._frames[next(iter(self._frames))]
        self._frames[id(message)] = (message, frame)
        return frame
