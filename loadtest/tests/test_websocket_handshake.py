"""Browser parity of the WebSocket handshake (FANOUT-NOTES.md, per-recipient compression).

Browsers offer permessage-deflate; the python client behind the locust users does not, so a
benchmark made with it alone cannot see what accepting the offer costs. These tests pin down
what each client offers and that a worker, in either async mode, refuses the offer.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading

import pytest
import socketio

from testkit.processes import REPO_ROOT, require_program

pytestmark = pytest.mark.e2e

NODE_PEER_DIR = REPO_ROOT / "loadtest" / "node-peer"
# What Chromium and socket.io-client on Node (the `ws` library) send.
BROWSER_OFFER = "permessage-deflate; client_max_window_bits"


def headers_of(raw: bytes) -> tuple[str, dict[str, str]]:
    """The first line and the headers (lower-cased names) of an HTTP request or response."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
    return head[0], {k.strip().lower(): v.strip() for k, v in fields.items()}


class HandshakeRecorder:
    """A TCP listener that records the first HTTP request it gets, then hangs up."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.request = b""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(5)
            while b"\r\n\r\n" not in self.request:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                self.request += chunk

    def headers(self) -> tuple[str, dict[str, str]]:
        self._thread.join(10)
        self.sock.close()
        return headers_of(self.request)


def test_the_python_client_of_the_locust_users_offers_no_extension():
    recorder = HandshakeRecorder()
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(
            f"http://127.0.0.1:{recorder.port}",
            transports=["websocket"],
            auth={"token": "t"},
            wait_timeout=3,
        )
    line, headers = recorder.headers()
    assert line.startswith("GET /socket.io/?") and "transport=websocket" in line
    assert headers["upgrade"] == "websocket"
    assert "sec-websocket-extensions" not in headers


def test_the_browser_like_node_client_offers_permessage_deflate_as_browsers_do():
    node = require_program("node")
    recorder = HandshakeRecorder()
    script = (
        'const {io} = require("socket.io-client");'
        f'const s = io("http://127.0.0.1:{recorder.port}",'
        ' {transports: ["websocket"], reconnection: false});'
        's.on("connect_error", () => process.exit(0)); setTimeout(() => process.exit(0), 5000);'
    )
    subprocess.run([node, "-e", script], cwd=NODE_PEER_DIR, timeout=20, check=True)
    _, headers = recorder.headers()
    assert headers["sec-websocket-extensions"] == BROWSER_OFFER


@pytest.mark.parametrize("async_mode", ["gevent", "eventlet"])
def test_a_worker_answers_a_deflate_offer_with_101_and_no_extension(start_worker, async_mode):
    worker = start_worker(ASYNC_MODE=async_mode)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{worker.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Extensions: {BROWSER_OFFER}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as conn:
        conn.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = conn.recv(4096)
            if not chunk:
                break
            response += chunk
    status, headers = headers_of(response)
    assert status.startswith("HTTP/1.1 101"), response
    assert headers["upgrade"].lower() == "websocket"
    assert "sec-websocket-extensions" not in headers, response


def test_the_browser_like_harness_runs_and_gets_no_compression_from_the_workers(
    redis_server, start_worker, tmp_path
):
    """The harness itself, a few seconds against two workers: nothing lost, no extension."""
    node = require_program("node")
    env = {
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}",
        "RATE_LIMIT_MESSAGES": "100000",
    }
    targets = ",".join(start_worker(**env, NODE_ID=f"bl-{i}").url for i in (1, 2))
    done = subprocess.run(
        [
            node,
            "browser-like-client.js",
            "--targets",
            targets,
            "--users",
            "4",
            "--senders",
            "2",
            "--rate",
            "4",
            "--duration",
            "2",
            "--grace",
            "2",
        ],
        cwd=NODE_PEER_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'WebSocket extensions negotiated: {"(none)":4}' in done.stdout
    assert "lost 0   duplicated 0" in done.stdout
