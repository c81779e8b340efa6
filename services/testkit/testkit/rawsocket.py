"""Engine.IO v4 / Socket.IO v5 spoken by hand, for tests that must send what no client library
would: a raw WebSocket (websocket-client) and raw long-polling requests (requests).

Packet text, for reference: Engine.IO `0` open, `1` close, `2` ping, `3` pong, `4` message,
`6` noop; inside an Engine.IO message, Socket.IO `0` connect, `1` disconnect, `2` event,
`3` ack, `4` connect error, `5` binary event, `6` binary ack. So `40{"token":...}` connects
to the default namespace and `421["join",{...}]` is event "join" with ack id 1.
"""

from __future__ import annotations

import contextlib
import json
import time
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
                return json.loads(packet[len(prefix):])[0]

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
