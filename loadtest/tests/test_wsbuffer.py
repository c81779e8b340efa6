"""BufferedWebSocket must frame exactly as websocket-client does, however the bytes arrive.

First against hand-made frames on a socketpair (every length encoding, control frames between
data frames, a fragmented message, bytes arriving one at a time or all at once), compared with
the library's own WebSocket; then the real python-socketio client of the locust users against a
real chat worker, with a chunk smaller than most messages.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from websocket import ABNF, WebSocket, WebSocketConnectionClosedException

from chatload import wsbuffer
from chatload.client import LoadClient
from chatload.wsbuffer import BufferedWebSocket


def frame(opcode: int, payload: bytes, fin: int = 1) -> bytes:
    """A server frame (servers never mask)."""
    return ABNF(fin, 0, 0, 0, opcode, 0, payload).format()


TEXTS = ["", "a", "é" * 10, "x" * 125, "y" * 126, "z" * 65535, "w" * 65536, "v" * 200_000]
STREAM = b"".join(
    [
        frame(ABNF.OPCODE_TEXT, TEXTS[0].encode()),
        frame(ABNF.OPCODE_PING, b"ping!"),
        *(frame(ABNF.OPCODE_TEXT, t.encode()) for t in TEXTS[1:4]),
        frame(ABNF.OPCODE_BINARY, b"\x00\xff" * 100),
        # One message in three fragments, with a ping between two of them (RFC 6455 5.4).
        frame(ABNF.OPCODE_TEXT, b"frag", fin=0),
        frame(ABNF.OPCODE_CONT, b"men", fin=0),
        frame(ABNF.OPCODE_PING, b""),
        frame(ABNF.OPCODE_CONT, b"ted", fin=1),
        *(frame(ABNF.OPCODE_TEXT, t.encode()) for t in TEXTS[4:]),
    ]
)
EXPECTED = [TEXTS[0], *TEXTS[1:4], b"\x00\xff" * 100, "fragmented", *TEXTS[4:]]


def receive_all(ws_class: type[WebSocket], pieces: list[bytes]) -> tuple[list, bytes]:
    """What ws.recv() returns for STREAM sent in these pieces, and what it wrote back."""
    ours, theirs = socket.socketpair()
    ws = ws_class(skip_utf8_validation=True)
    ws.sock, ws.connected = ours, True
    ours.settimeout(10)

    def feed() -> None:
        for piece in pieces:
            theirs.sendall(piece)
            time.sleep(0)  # let the reader take what is there, so pieces stay pieces

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        got = [ws.recv() for _ in EXPECTED]
        feeder.join(10)
        theirs.shutdown(socket.SHUT_WR)
        with pytest.raises(WebSocketConnectionClosedException):
            ws.recv()  # and nothing left over in the buffer
        theirs.settimeout(5)
        written = b""
        while chunk := theirs.recv(65536):
            written += chunk
    finally:
        ours.close()
        theirs.close()
    return got, written


def pongs(written: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of the masked client frames in `written`."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(written)
        theirs.shutdown(socket.SHUT_WR)
        reader = WebSocket()
        reader.sock, reader.connected = ours, True
        out = []
        while True:
            try:
                f = reader.recv_frame()
            except WebSocketConnectionClosedException:
                return out
            out.append((f.opcode, f.data))


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([STREAM], id="all-at-once"),
        pytest.param(split(STREAM[:2000], 1) + [STREAM[2000:]], id="byte-by-byte-then-rest"),
        pytest.param(split(STREAM[:20_000], 7) + split(STREAM[20_000:], 997), id="small-pieces"),
        pytest.param(split(STREAM, 70_001), id="pieces-larger-than-the-chunk"),
    ],
)
def test_it_returns_what_the_library_returns_and_answers_pings(pieces):
    got, written = receive_all(BufferedWebSocket, pieces)
    library_got, library_written = receive_all(WebSocket, pieces)
    assert got == library_got == EXPECTED
    answers = [(ABNF.OPCODE_PONG, b"ping!"), (ABNF.OPCODE_PONG, b"")]
    assert pongs(written) == pongs(library_written) == answers


def test_it_reads_many_frames_per_syscall():
    calls = []
    ws = BufferedWebSocket(skip_utf8_validation=True)
    library_recv = ws._recv
    ws.frame_buffer.recv = lambda n: calls.append(n) or library_recv(n)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ws.sock, ws.connected = ours, True
        ours.settimeout(10)
        theirs.sendall(b"".join(frame(ABNF.OPCODE_TEXT, b"%d" % i) for i in range(100)))
        assert [ws.recv() for _ in range(100)] == [str(i) for i in range(100)]
    assert calls == [wsbuffer.READ_CHUNK]


# -- against a real chat worker -----------------------------------------------------------


def sign_up(base: str, username: str) -> str:
    creds = {"username": username, "password": "load-test-password"}
    requests.post(f"{base}/api/users", json=creds, timeout=10).raise_for_status()
    r = requests.post(f"{base}/api/tokens", json=creds, timeout=10)
    r.raise_for_status()
    return r.json()["token"]


@pytest.mark.e2e
def test_the_locust_client_receives_every_broadcast_intact_and_once(
    redis_server, start_worker, tmp_path, monkeypatch
):
    # A chunk smaller than most messages: frames straddle reads all the time.
    monkeypatch.setattr(wsbuffer, "READ_CHUNK", 1000)
    worker = start_worker(
        REDIS_URL=redis_server.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'chat.db'}",
        RATE_LIMIT_MESSAGES="100000",
    )
    texts = [f"{i:04d}:" + "m" * (i * 37 % 3990) for i in range(300)]
    received: list[str] = []
    all_in = threading.Event()
    clients = []
    try:
        for name in ("sender", "receiver"):
            client = LoadClient()
            if name == "receiver":

                def on_message(message: dict) -> None:
                    received.append(message["text"])
                    if len(received) == len(texts):
                        all_in.set()

                client.on("message", on_message)
            client.connect(
                worker.url,
                auth={"token": sign_up(worker.url, name)},
                transports=["websocket"],
                wait_timeout=10,
            )
            assert isinstance(client.eio.ws, BufferedWebSocket)
            assert client.call("join", {"room": "framing"}, timeout=10)["ok"]
            clients.append(client)
        sender = clients[0]
        for text in texts:
            sender.emit("message", {"room": "framing", "text": text})
        assert all_in.wait(30), f"{len(received)} of {len(texts)} arrived"
        # The worker handles events concurrently, so their order is its business; framing's
        # is that each arrives once and intact (the socketpair tests above check order).
        assert sorted(received) == sorted(texts)
    finally:
        for client in clients:
            client.disconnect()
