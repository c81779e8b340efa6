"""A websocket-client WebSocket that reads the socket in large chunks and decodes frames from them.

websocket-client 1.9 reads a frame with two `recv()` calls (the 2-byte header, then the rest
for exactly the bytes it still needs), joins and re-slices its buffer on every call and runs
each frame through several layers of pure Python (frame_buffer, ABNF, continuous_frame). A
py-spy of a locust process put ~40 % of its CPU there. This class:

- reads up to READ_CHUNK bytes per `recv()` syscall, so one syscall brings in every frame that
  has arrived (and a frame's header and payload together);
- keeps them as one bytes object plus an offset, so taking a frame out is one slice, not a
  join and a copy of everything behind it (which is quadratic in the bytes buffered);
- answers `recv()` for an unfragmented, unmasked text frame straight from that buffer (reading
  more first if the frame is not all there yet). Any other frame (ping, close, binary,
  fragments) goes the library's way, which reads through the same buffer (`recv_strict`), so
  the two never disagree about where a frame starts.

Nothing here polls the raw socket: python-engineio's read loop only calls `ws.recv()`, and the
library only select()s after a `recv()` on the socket itself said EAGAIN, so bytes waiting in
this buffer are always consumed first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import websocket
from websocket._abnf import frame_buffer

# Large enough to take every frame queued on a connection in one go at the rates we run;
# small enough not to matter times a few thousand connections (the chunk is freed once used).
READ_CHUNK = 64 * 1024

_FIN_TEXT = 0x81  # FIN set, RSV1-3 clear, opcode 1 (text)


class ChunkedFrameBuffer(frame_buffer):
    """frame_buffer whose recv_strict reads big chunks and slices them at an offset."""

    def __init__(self, recv_fn: Callable[[int], bytes], skip_utf8_validation: bool) -> None:
        super().__init__(recv_fn, skip_utf8_validation)
        self.data = b""
        self.pos = 0

    def fill(self, needed: int) -> None:
        """Read until at least `needed` bytes are buffered past the offset.

        Joined once at the end (a big frame arriving in many small reads is not copied over
        and over), also when a read raises: a timeout or a closed socket in the middle of a
        frame loses nothing that was already read, as with the library's buffer.
        """
        have = len(self.data) - self.pos
        if have >= needed:
            return
        parts = [self.data[self.pos :]]
        try:
            while have < needed:
                chunk = self.recv(READ_CHUNK)
                parts.append(chunk)
                have += len(chunk)
        finally:
            self.data = b"".join(parts)
            self.pos = 0

    def recv_strict(self, bufsize: int) -> bytes:
        end = self.pos + bufsize
        if end > len(self.data):
            self.fill(bufsize)
            end = bufsize
        out = self.data[self.pos : end]
        self.pos = end
        return out


class BufferedWebSocket(websocket.WebSocket):
    """websocket.WebSocket with ChunkedFrameBuffer and a fast path for whole text frames.

    Pass it as `class_` to websocket.create_connection (python-engineio forwards its
    `websocket_extra_options` there).
    """

    def __init__(self, *args: Any, skip_utf8_validation: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, skip_utf8_validation=skip_utf8_validation, **kwargs)
        self.frame_buffer = ChunkedFrameBuffer(self._recv, skip_utf8_validation)

    def recv(self) -> str | bytes:
        with self.readlock:
            text = self._next_text_frame()
        if text is not None:
            return text
        return super().recv()

    def _next_text_frame(self) -> str | None:
        """The next frame's text if it is an unfragmented text frame, read as far as needed.

        None, with nothing consumed, when the next frame is anything else: the library's
        recv() then reads it from the same buffer.
        """
        fb = self.frame_buffer
        if fb.header is not None or self.cont_frame.recving_frames:
            return None  # the library is half-way through a frame or a fragmented message
        fb.fill(2)
        data, pos = fb.data, fb.pos
        length = data[pos + 1]
        if data[pos] != _FIN_TEXT or length & 0x80:  # servers never mask
            return None
        start = pos + 2
        if length >= 126:
            extra = 2 if length == 126 else 8
            fb.fill(2 + extra)
            data, pos = fb.data, fb.pos
            start = pos + 2 + extra
            length = int.from_bytes(data[pos + 2 : start], "big")
        if len(data) < start + length:
            fb.fill(start - pos + length)
            data, start = fb.data, start - pos  # fill() moved what was left to offset 0
        end = start + length
        fb.pos = end
        # Strict decoding rejects broken UTF-8 whether or not validation was skipped.
        return data[start:end].decode("utf-8")
