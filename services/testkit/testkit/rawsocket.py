"""Engine.IO v4 / Socket.IO v5 spoken by hand, for tests that must send what no client library
would: a raw WebSocket (websocket-client) and raw long-polling requests (requests).

Packet text, for reference: Engine.IO `0` open, `1` close, `2` ping, `3` pong, `4` message,
`6` noop; inside an Engine.IO message, Socket.IO `0` connect, `1` disconnect, `2` event,
`3` ack, `4` connect error, `5` binary event, `6` binary ack. So `40{"token":...}` connects
to the default namespace and `421["join",{...}]` is event "join" with ack id 1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import requests
import websocket

# Long-polling payloads separate packets with the record separator.
RECORD_SEPARATOR = "\x1e"


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://", 1) + "/socket.io/?EIO=4&transport=websocket"


class RawWebSocket:
    """One Engine.IO session over a raw WebSocket; answers the server's pings itself."""

    def __init__(self, base_url: str, *, origin: str | None = None, timeout: float = 5) -> None:
        options: dict[str, Any] = {"timeout": timeout}
        if origin is None:
            options["suppress_origin"] = True
        else:
            options["origin"] = origin
        self.ws = websocket.create_connection(ws_url(base_url), **options)
        opening = self.ws.recv()
        if not opening.startswith("0"):
            raise ConnectionError(f"no Engine.IO open packet: {opening!r}")
        self.handshake = json.loads(opening[1:])
        self._next_ack = 1

    def send(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            self.ws.send_binary(data)
        else:
            self.ws.send(data)

    def recv(self, timeout: float = 5) -> str | bytes:
        """The next packet that is not a ping (pings are answered)."""
        deadline = time.monotonic() + timeout
        while True:
            self.ws.settimeout(max(0.01, deadline - time.monotonic()))
            packet = self.ws.recv()
            if packet == "2":
                self.ws.send("3")
                continue
            return packet

    def connect(self, auth: Any) -> str:
        """Socket.IO CONNECT to the default namespace; the server's answer (`40...`/`44...`)."""
        self.send("40" + json.dumps(auth))
        return self.recv()

    def call(self, event: str, data: Any, timeout: float = 5) -> Any:
        """Emit with an ack id and return the ack's payload (events in between are skipped)."""
        ack_id = self._next_ack
        self._next_ack += 1
        self.send(f"42{ack_id}" + json.dumps([event, data]))
        deadline = time.monotonic() + timeout
        prefix = f"43{ack_id}"
        while True:
            packet = self.recv(max(0.01, deadline - time.monotonic()))
            if isinstance(packet, str) and packet.startswith(prefix):
                return json.loads(packet[len(prefix) :])[0]

    def connected(self) -> bool:
        return self.ws.connected

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed by the server
            self.ws.close(timeout=1)


class RawPolling:
    """One Engine.IO session over raw long-polling HTTP requests."""

    def __init__(self, base_url: str, *, origin: str | None = None, timeout: float = 5) -> None:
        self.url = base_url + "/socket.io/?EIO=4&transport=polling"
        self.http = requests.Session()
        if origin is not None:
            self.http.headers["Origin"] = origin
        self.timeout = timeout
        r = self.http.get(self.url, timeout=timeout)
        r.raise_for_status()
        self.handshake = json.loads(r.text[1:])
        self.sid = self.handshake["sid"]

    def post(self, body: str | bytes) -> requests.Response:
        return self.http.post(f"{self.url}&sid={self.sid}", data=body, timeout=self.timeout)

    def get(self) -> requests.Response:
        return self.http.get(f"{self.url}&sid={self.sid}", timeout=self.timeout)


class SlowConsumer:
    """A WebSocket client that joins a room and then never reads again.

    Spoken over a plain TCP socket with a small receive buffer, so the kernel's buffers on
    both sides fill after a few hundred kilobytes and the server's writes to it block.
    """

    def __init__(self, base_url: str, token: str, room: str, receive_buffer: int = 4096) -> None:
        self.room = room
        host, port = base_url.split("://", 1)[1].split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(5)
        self.sock.connect((host, int(port)))
        self.local_port = self.sock.getsockname()[1]
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self.sock.recv(4096)
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))
        if not self._read_frame().startswith("0"):
            raise ConnectionError("no Engine.IO open packet")
        self._send_frame("40" + json.dumps({"token": token}))
        if not self._read_until("40").startswith("40"):
            raise ConnectionError("Socket.IO connect refused")
        self._send_frame("421" + json.dumps(["join", {"room": room}]))
        ack = self._read_until("431")
        if '"ok":true' not in ack.replace(" ", ""):
            raise ConnectionError(f"join refused: {ack}")
        # From here on nothing is read.

    def _send_frame(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _read_frame(self) -> str:
        first, second = self._read_exact(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._read_exact(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read_exact(8), "big")
        return self._read_exact(length).decode(errors="replace")

    def _read_until(self, prefix: str) -> str:
        while True:
            text = self._read_frame()
            if text == "2":
                self._send_frame("3")
            elif text.startswith(prefix):
                return text

    def close(self) -> None:
        self.sock.close()


def server_send_queue_bytes(server_port: int, client_port: int) -> int:
    """Bytes the server's socket to this client has queued but not yet had acknowledged
    (Linux /proc/net/tcp tx_queue): how far a slow consumer is behind."""
    wanted = (f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}")
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            return int(fields[4].split(":")[0], 16)
    return 0
