"""Parked WebSockets (chat/transport/parking.py): once open, a WebSocket is read by a watcher
and a greenlet only while bytes arrive, and behaves on the wire exactly as before.

A real worker (gevent), real TCP: the python-socketio client, and a raw client that chooses
how its bytes are cut into TCP writes (frames sent with the handshake, two frames in one
write, one frame in two writes). The gevent parts it relies on have canaries at the end.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import socket
import struct
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

import engineio
import pytest
import requests
import socketio
from geventwebsocket.handler import WebSocketHandler
from prometheus_client.parser import text_string_to_metric_families

from chat.transport.gevent_server import PARKED
from chat.transport.masking import unmask

# A generous liveness bound for what should take milliseconds (a busy 2-core machine).
LIVENESS_SECONDS = 10


def gauge(worker, name: str) -> float:
    text = requests.get(worker.url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not in /metrics")


def eventually(check, what: str) -> None:
    deadline = time.monotonic() + LIVENESS_SECONDS
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def nothing_parked(worker):
    """Each test starts with no parked WebSocket on the module's worker (the one before it
    may still be ending its last)."""
    eventually(lambda: gauge(worker, "chat_websockets_parked") == 0, "the last test's ended")


def client_frame(text: str) -> bytes:
    """A masked text frame, as a browser sends it."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x81, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + unmask(payload, mask)


class RawClient:
    """A WebSocket client on a plain TCP socket: the test decides how bytes are written."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=LIVENESS_SECONDS)
        self.buffer = b""

    @staticmethod
    def handshake() -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        return head

    def read_frame(self) -> tuple[int, bytes]:
        first, second = self.read_exact(2)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self.read_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self.read_exact(8))
        return first & 0x0F, self.read_exact(n)

    def read_text(self) -> str:
        """The next text frame's text, answering nothing (PINGs come every 25 s)."""
        opcode, payload = self.read_frame()
        assert opcode == 0x1, (opcode, payload)
        return payload.decode()

    def read_ack(self) -> str:
        """The next Socket.IO ACK packet's text; events pushed before it are skipped."""
        while True:
            text = self.read_text()
            if text.startswith("43"):
                return text

    def eof(self) -> bool:
        """True once the server has closed the TCP connection (frames before it skipped)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionError, TimeoutError):
            return False

    def close(self) -> None:
        self.sock.close()


def connect_packet(token: str) -> str:
    return "40" + json.dumps({"token": token})


def event_packet(ack_id: int, room: str) -> str:
    return f"42{ack_id}" + json.dumps(["join", {"room": room}])


# --- the parked connection on the wire --------------------------------------------------------


def test_an_open_websocket_is_parked_and_unparked_when_it_ends(worker, token):
    clients = [socketio.Client() for _ in range(3)]
    for c in clients:
        c.connect(worker.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    try:
        eventually(lambda: gauge(worker, "chat_websockets_parked") == 3, "3 parked WebSockets")
        # Read while parked: each event is acked, the connection stays parked.
        for i, c in enumerate(clients):
            assert c.call("join", {"room": f"parked-{i}"}, timeout=10)["ok"]
        assert gauge(worker, "chat_websockets_parked") == 3
    finally:
        for c in clients:
            c.disconnect()
    eventually(lambda: gauge(worker, "chat_websockets_parked") == 0, "unparked")
    # Engine.IO forgot them too: the request handler's clean-up ran at the parked end.
    assert gauge(worker, "chat_connected_clients") == 0


def test_an_upgrade_from_long_polling_is_parked_too(worker, token):
    c = socketio.Client()
    c.connect(worker.url, auth={"token": token}, transports=["polling", "websocket"])
    try:
        eventually(lambda: c.transport() == "websocket", "upgraded")
        eventually(lambda: gauge(worker, "chat_websockets_parked") == 1, "parked")
        assert c.call("join", {"room": "parked-upgrade"}, timeout=10)["ok"]
    finally:
        c.disconnect()
    eventually(lambda: gauge(worker, "chat_websockets_parked") == 0, "unparked")


def test_frames_sent_with_the_handshake_are_read(worker, token):
    """Bytes that reached the request's reader before the connection was parked are not left
    waiting for the socket to become readable again."""
    raw = RawClient(worker.url)
    try:
        raw.sock.sendall(
            raw.handshake()
            + client_frame(connect_packet(token))
            + client_frame(event_packet(1, "parked-early"))
        )
        raw.read_head()
        assert raw.read_text().startswith("0{")  # Engine.IO OPEN
        assert raw.read_text().startswith("40{")  # Socket.IO CONNECT accepted
        reply = raw.read_ack()
        assert reply.startswith("431"), reply
        assert json.loads(reply[3:])[0]["ok"] is True
    finally:
        raw.close()


def test_two_frames_in_one_write_and_one_frame_in_two_writes_are_read_in_order(worker, token):
    raw = RawClient(worker.url)
    try:
        raw.sock.sendall(raw.handshake())
        raw.read_head()
        assert raw.read_text().startswith("0{")
        raw.sock.sendall(client_frame(connect_packet(token)))
        assert raw.read_text().startswith("40{")

        raw.sock.sendall(
            client_frame(event_packet(1, "parked-a")) + client_frame(event_packet(2, "parked-b"))
        )
        third = client_frame(event_packet(3, "parked-c" + "x" * 200))  # a 16-bit length
        raw.sock.sendall(third[:5])  # the header cut in the middle
        time.sleep(0.3)
        raw.sock.sendall(third[5:])

        acks = [raw.read_ack() for _ in range(3)]
        assert [a[:3] for a in acks] == ["431", "432", "433"]
        assert [json.loads(a[3:])[0]["ok"] for a in acks[:2]] == [True, True]
    finally:
        raw.close()


def test_a_websocket_the_server_closes_ends_its_tcp_connection_though_the_client_is_silent(
    worker,
):
    """A refused frame closes the WebSocket on this side; no reader waits on the socket to
    notice, yet the TCP connection is closed and the parked reader is gone."""
    raw = RawClient(worker.url)
    try:
        raw.sock.sendall(raw.handshake())
        raw.read_head()
        assert raw.read_text().startswith("0{")
        eventually(lambda: gauge(worker, "chat_websockets_parked") == 1, "parked")
        raw.sock.sendall(client_frame(""))  # no Engine.IO packet: refused, connection closed
        assert raw.eof()
    finally:
        raw.close()
    eventually(lambda: gauge(worker, "chat_websockets_parked") == 0, "unparked")


def test_a_client_that_goes_away_without_a_close_frame_is_unparked(worker, token):
    raw = RawClient(worker.url)
    raw.sock.sendall(raw.handshake() + client_frame(connect_packet(token)))
    raw.read_head()
    assert raw.read_text().startswith("0{")
    assert raw.read_text().startswith("40{")
    eventually(lambda: gauge(worker, "chat_websockets_parked") == 1, "parked")
    raw.close()  # FIN, no close frame
    eventually(lambda: gauge(worker, "chat_websockets_parked") == 0, "unparked")
    eventually(lambda: gauge(worker, "chat_connected_clients") == 0, "disconnected")


def test_closing_a_parked_connection_wakes_a_greenlet_waiting_in_it_for_the_rest_of_a_frame():
    """The end of a connection may run on another greenlet (the writer's close, the drain)
    while a reader waits in recv() for the rest of a frame: it is woken at once, not left on
    a closed descriptor until its socket's timeout (found by review: 30 s here)."""
    import gevent
    from gevent import socket as gsocket

    from chat.transport.parking import _close_tcp

    ours, theirs = gsocket.socketpair()
    ours.settimeout(30)
    reader_file = ours.makefile("rb")  # as pywsgi's reader, still referenced
    woke: list[bytes] = []

    def reader() -> None:
        try:
            woke.append(ours.recv(10))
        except OSError:
            woke.append(b"error")

    waiting = gevent.spawn(reader)
    gevent.sleep(0.1)
    with gevent.Timeout(LIVENESS_SECONDS):
        _close_tcp(ours)
        waiting.join()
    assert woke in ([b""], [b"error"])
    reader_file.close()
    theirs.close()


# --- canaries: what parking relies on upstream -------------------------------------------------


def test_upstream_geventwebsocket_run_websocket_closes_only_a_websocket_not_marked_closed():
    """ChatWebSocketHandler.park swaps `self.websocket` for PARKED (closed=True) so that
    run_websocket's `finally` leaves the live WebSocket open."""
    closed = []
    live = SimpleNamespace(closed=False, close=lambda: closed.append(True))
    handler = SimpleNamespace(
        server=SimpleNamespace(), client_address=("127.0.0.1", 1), environ={}, websocket=live
    )

    def app(environ, start_response):
        handler.websocket = PARKED
        return []

    handler.application = app
    WebSocketHandler.run_websocket(handler)
    assert closed == []
    assert handler.websocket is None
    assert handler.server.clients == {}


def test_upstream_gevent_pywsgi_closes_only_the_socket_its_handler_still_holds():
    """pywsgi's WSGIHandler.handle closes `self.socket` in its `finally` only when it is not
    None; the server then calls do_close(sock), which ChatWSGIServer skips for a parked one."""
    from gevent import pywsgi

    source = inspect.getsource(pywsgi.WSGIHandler.handle)
    assert "if self.socket is not None:" in source
    assert "self.socket.close()" in source
    from gevent import baseserver

    assert "close(*args_tuple)" in inspect.getsource(baseserver._handle_and_close_when_done)


def test_upstream_engineio_forgets_a_closed_socket_when_its_websocket_handler_returns():
    """lazy_writer's `_parked_reader_ended` does this itself for a parked WebSocket, whose
    handler returned while it was open."""
    server_source = inspect.getsource(engineio.Server)
    assert server_source.count("self.sockets[sid].closed:") == 1
    assert "if s.closed and sid in self.sockets:" in server_source
