"""The gevent server (chat/transport/gevent_server.py): every upgrade gets a BoundedWebSocket.

A real gevent WSGIServer on 127.0.0.1 in this process, a raw WebSocket client over a gevent
socket: the handshake, a frame within the limit echoed, one past it refused with a close.
"""

from __future__ import annotations

import base64
import gc
import inspect
import logging
import os
import socket
import sys
from types import SimpleNamespace

import gevent
import pytest
from gevent import pywsgi
from gevent import socket as gsocket
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Stream, WebSocket

from chat.transport.gevent_server import READ_BUFFER_BYTES, ChatWebSocketHandler, make_server
from chat.transport.masking import unmask

LIMIT = 100


def echo_app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain"]
    ws.send(type(ws).__name__)
    nodelay = ws.handler.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    ws.send(f"nodelay {nodelay}")
    while True:
        message = ws.receive()
        if message is None:
            return []
        ws.send("echo " + message)


@pytest.fixture
def server():
    srv = make_server(
        echo_app,
        "127.0.0.1",
        0,
        max_message_bytes=LIMIT,
        header_timeout_seconds=5,
        pre_start_hook=None,
        access_log=False,
    )
    srv.start()
    yield srv
    srv.stop(timeout=1)


class Client:
    """A raw WebSocket client over a gevent socket, reading exactly what it asks for."""

    def __init__(self, port: int) -> None:
        self.sock = gsocket.create_connection(("127.0.0.1", port))
        self.buffer = b""

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(4096)
            assert chunk, f"EOF after {self.buffer!r}"
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, self.buffer
            self.buffer += chunk
        end = self.buffer.index(marker) + len(marker)
        out, self.buffer = self.buffer[:end], self.buffer[end:]
        return out

    def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of a server's frame (unmasked, at most 125 bytes)."""
        head = self.read(2)
        assert head[1] < 126
        return head[0] & 0x0F, self.read(head[1])

    def at_eof(self) -> bool:
        return not self.buffer and self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


def client_frame(text: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(text) < 126
    return bytes([0x81, 0x80 | len(text)]) + mask + unmask(text, mask)


def upgraded(port: int) -> Client:
    client = Client(port)
    key = base64.b64encode(os.urandom(16)).decode()
    client.sock.sendall(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = client.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return client


def test_an_upgrade_gets_a_bounded_websocket_that_echoes_within_the_limit(server):
    with gevent.Timeout(10):
        client = upgraded(server.server_port)
        assert client.read_frame() == (0x1, b"BoundedWebSocket")
        assert client.read_frame() == (0x1, b"nodelay 1")  # Nagle off: frames go at once
        client.sock.sendall(client_frame(b"4" + b"x" * (LIMIT - 1)))
        assert client.read_frame() == (0x1, b"echo 4" + b"x" * (LIMIT - 1))
        client.close()


def test_a_frame_past_the_limit_is_answered_with_a_close_frame(server):
    with gevent.Timeout(10):
        client = upgraded(server.server_port)
        assert client.read_frame() == (0x1, b"BoundedWebSocket")
        assert client.read_frame() == (0x1, b"nodelay 1")
        # 101 bytes announced; the payload is never sent, nor waited for.
        client.sock.sendall(bytes([0x81, 0x80 | 101]) + os.urandom(4))
        assert client.read_frame() == (0x8, b"")
        assert client.at_eof()  # and the connection ends
        client.close()


def test_a_request_that_is_not_an_upgrade_is_plain_http(server):
    with gevent.Timeout(10):
        client = Client(server.server_port)
        client.sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        response = client.read_until(b"plain")
        assert response.startswith(b"HTTP/1.1 200 ")
        client.close()


# --- canaries: what ChatWebSocketHandler relies on in gevent-websocket -------------------------


def test_upstream_geventwebsocket_upgrade_builds_its_websocket_where_the_handler_swaps_it():
    # ChatWebSocketHandler.upgrade_connection replaces self.websocket and
    # environ["wsgi.websocket"] after gevent-websocket set them, before anything was read.
    source = inspect.getsource(WebSocketHandler.upgrade_connection)
    assert "self.websocket = WebSocket(self.environ, Stream(self), self)" in source
    assert "'wsgi.websocket': self.websocket" in source
    run = inspect.getsource(WebSocketHandler.run_application)
    assert run.index("self.upgrade_websocket()") < run.index("self.run_websocket()")


class Wire:
    def __init__(self) -> None:
        self.written = bytearray()

    def read(self, n: int) -> bytes:
        return b""

    def write(self, data: bytes) -> None:
        self.written += data


def handler() -> SimpleNamespace:
    return SimpleNamespace(
        server=SimpleNamespace(application=object()), logger=logging.getLogger("test")
    )


@pytest.mark.parametrize(("marked_closed", "written"), [(True, b""), (False, b"\x88\x00")])
def test_upstream_geventwebsocket_a_websocket_marked_closed_writes_nothing_when_dropped(
    marked_closed, written
):
    # The object gevent-websocket built is dropped for ours: its __del__ closes it, which
    # writes a close frame unless it is marked closed first (as the handler does).
    wire = Wire()
    ws = WebSocket({}, wire, handler())
    ws.closed = marked_closed
    del ws
    gc.collect()
    assert bytes(wire.written) == written


# --- the connection's reader: a small buffer (READ_BUFFER_BYTES) instead of pywsgi's 8 KiB ----


def test_each_connection_reads_through_a_small_buffer_and_a_long_head_still_upgrades(server):
    with gevent.Timeout(10):
        a, b = gsocket.socketpair()
        try:
            handler = ChatWebSocketHandler(a, ("127.0.0.1", 1), server)
            reference = a.makefile("rb", READ_BUFFER_BYTES)
            eight_kib = a.makefile("rb", -1)
            assert sys.getsizeof(handler.rfile) == sys.getsizeof(reference)
            assert sys.getsizeof(eight_kib) - sys.getsizeof(handler.rfile) == 8192 - 1024
            for f in (reference, eight_kib, handler.rfile):
                f.close()
        finally:
            a.close()
            b.close()
        # A request head three times the buffer (a long cookie), then frames: all read.
        client = Client(server.server_port)
        key = base64.b64encode(os.urandom(16)).decode()
        client.sock.sendall(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nCookie: c={'x' * 3 * READ_BUFFER_BYTES}\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        assert client.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 101 ")
        assert client.read_frame() == (0x1, b"BoundedWebSocket")
        assert client.read_frame() == (0x1, b"nodelay 1")
        client.sock.sendall(client_frame(b"4one") + client_frame(b"4two"))  # in one segment
        assert client.read_frame() == (0x1, b"echo 4one")
        assert client.read_frame() == (0x1, b"echo 4two")
        client.close()


def test_upstream_gevent_pywsgi_handler_makes_its_reader_in_init_and_frames_read_through_it():
    # use_small_read_buffer replaces `rfile` after pywsgi's __init__ made it, before any read;
    # gevent-websocket's Stream reads the WebSocket's frames through the handler's rfile.
    init = inspect.getsource(pywsgi.WSGIHandler.__init__)
    assert "self.rfile = sock.makefile('rb', -1)" in init
    assert "handler.rfile.read" in inspect.getsource(Stream.__init__)
