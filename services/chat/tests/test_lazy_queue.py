"""Engine.IO's per-socket queue made on first use and let go when the lazy writer goes idle
(socket_limits.LimitedSocket.queue, lazy_writer.LazyWriterSocket._release_idle_queue).

Each scenario runs twice under gevent (the mode the lazy writer runs in), in this process
against a fake transport: "released", as shipped, and "kept", with the release switched off,
which is the queue as before (made by the OPEN packet, the first thing every socket queues,
and kept for the socket's life). Both must put the same bytes on the wire and end the same
way; "released" must also hold no queue whenever the socket is idle on its WebSocket. The
same path with real clients and workers (WebSocket only, polling then the upgrade, a member
that stops reading): test_direct_write.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import engineio
import engineio.socket
import engineio_fakes
import gevent
import gevent.event
import gevent.queue
import pytest
from engineio import packet

from chat.transport.lazy_writer import LazyWriterSocket


class GreenWebSocket:
    """A WebSocket transport under gevent: `wire` is every frame in the order written, by
    the writer (`send`, which the test may hold) or directly (`send_nowait`, which takes
    nothing while `full` is set)."""

    def __init__(self) -> None:
        self.incoming: gevent.queue.Queue = gevent.queue.Queue()
        self.wire: list[str] = []
        self.full = False
        self.hold = gevent.event.Event()
        self.hold.set()
        self.writing = gevent.event.Event()
        self.closed = gevent.event.Event()
        self._sock = self  # where direct_write looks for send_nowait

    def wait(self):
        return self.incoming.get(timeout=10)

    def send(self, data: str) -> None:
        self.writing.set()
        assert self.hold.wait(10)
        self.wire.append(data)

    def send_nowait(self, data: str) -> bytes | None:
        if self.full:
            return None
        self.wire.append(data)
        return b""

    def close(self) -> None:
        self.closed.set()
        self.incoming.put(None)


def until(predicate, seconds: float = 5.0) -> bool:
    """Let the other greenlets run until `predicate` holds (a liveness bound, not a timing)."""
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        gevent.sleep(0.001)
    return predicate()


@pytest.fixture(params=["released", "kept"])
def variant(request, monkeypatch) -> str:
    if request.param == "kept":
        monkeypatch.setattr(LazyWriterSocket, "_release_idle_queue", lambda self: None)
    return request.param


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(engineio.socket, "Socket", LazyWriterSocket)
    eio = engineio.Server(async_mode="gevent", ping_interval=60)
    eio.start_service_task = False
    yield eio
    for sock in list(eio.sockets.values()):
        sock.closed = True


def idle_without_queue(sock: LazyWriterSocket, variant: str) -> bool:
    """The socket's writer has ended; "released" holds no queue then, "kept" one."""
    if not until(lambda: sock._lazy_writer is None):
        return False
    return (sock._queue is None) == (variant == "released")


def end(sock: LazyWriterSocket, ws: GreenWebSocket, server, how: str) -> None:
    if how == "close_wait":  # Engine.IO's own close: joins the queue
        gevent.spawn(sock.close).join(5)
    elif how == "close_nowait":
        sock.close(wait=False)
    elif how == "server_disconnect":  # Engine.IO's disconnect(sid): close(wait=True)
        gevent.spawn(server.disconnect, sock.sid).join(5)
    elif how == "client_goes":
        ws.incoming.put(None)
    elif how == "cut":  # socket_limits' cut: the queue emptied, no CLOSE
        sock.cut("test", "cut by the test")


# What each way to end writes last: a CLOSE packet, or nothing.
ENDINGS = {
    "close_wait": ["1"],
    "close_nowait": ["1"],
    "server_disconnect": ["1"],
    "client_goes": [],
    "cut": [],
}


@pytest.mark.parametrize("how", sorted(ENDINGS))
def test_a_websocket_only_socket_through_every_state(server, variant, how):
    sid = f"ws-{uuid.uuid4().hex}"
    sock = LazyWriterSocket(server, sid)
    server.sockets[sid] = sock
    assert sock._queue is None  # nothing made yet
    # What Engine.IO's _handle_connect does before the transport runs: the OPEN is queued.
    sock.send(packet.Packet(packet.OPEN, {"sid": sid}))
    assert sock._queue is not None and sock._queued_count() == 1
    ws = GreenWebSocket()
    handler = gevent.spawn(sock._websocket_handler, ws)
    open_frame = "0" + json.dumps({"sid": sid}, separators=(",", ":"))
    assert until(lambda: ws.wire == [open_frame])
    assert idle_without_queue(sock, variant)

    # A message and a PING, written directly: no queue made for them.
    sock.send(packet.Packet(packet.MESSAGE, data="direct"))
    sock.last_ping = time.time()
    sock.send(packet.Packet(packet.PING))
    assert ws.wire[1:] == ["4direct", "2"] and sock._ping_written
    assert idle_without_queue(sock, variant)
    ws.incoming.put("3")
    assert until(lambda: sock.last_ping is None)  # the PONG counted

    # The kernel takes nothing: the message goes through a queue and a writer.
    ws.full = True
    sock.send(packet.Packet(packet.MESSAGE, data="queued"))
    assert sock._queue is not None
    assert until(lambda: ws.wire[-1:] == ["4queued"])
    assert idle_without_queue(sock, variant) and sock.queued_bytes == 0

    # The writer is busy: what comes meanwhile queues behind it, in order, though the
    # kernel would take it now.
    ws.writing.clear()
    ws.hold.clear()
    sock.send(packet.Packet(packet.MESSAGE, data="first"))
    assert ws.writing.wait(5)
    ws.full = False
    for data in ("second", "third"):
        sock.send(packet.Packet(packet.MESSAGE, data=data))
    assert sock._queued_count() == 2 and sock.queued_bytes == 6 + 7 + 6  # with "first"
    ws.hold.set()
    assert until(lambda: ws.wire[-3:] == ["4first", "4second", "4third"])
    assert idle_without_queue(sock, variant) and sock.queued_bytes == 0
    sock.send(packet.Packet(packet.MESSAGE, data="direct again"))
    assert ws.wire[-1] == "4direct again" and idle_without_queue(sock, variant)

    end(sock, ws, server, how)
    handler.join(5)
    assert handler.dead and sock.closed and ws.closed.is_set()
    assert ws.wire == [
        open_frame,
        "4direct",
        "2",
        "4queued",
        "4first",
        "4second",
        "4third",
        "4direct again",
        *ENDINGS[how],
    ]
    assert sock._lazy_writer is None
    assert sock._queue is None or sock._queue.unfinished_tasks == 0


def request(server, method: str, query: str, body: bytes = b"") -> bytes:
    environ = engineio_fakes.wsgi_request(method, query, body)
    status: list[str] = []
    out = b"".join(server.handle_request(environ, lambda s, h: status.append(s)))
    assert status == ["200 OK"], out
    return out


def polling_socket(server) -> tuple[str, LazyWriterSocket]:
    body = request(server, "GET", "EIO=4&transport=polling")
    assert body[:1] == b"0", body
    sid = json.loads(body[1:])["sid"]
    return sid, server.sockets[sid]


def long_poll(server, sid: str) -> gevent.Greenlet:
    """A long-poll GET, waiting in poll() once the other greenlets have run."""
    return gevent.spawn(request, server, "GET", f"EIO=4&transport=polling&sid={sid}")


@pytest.mark.parametrize("how", sorted(ENDINGS))
def test_a_polling_socket_upgraded_with_a_get_waiting_through_every_state(server, variant, how):
    sid, sock = polling_socket(server)
    # Long-polling: the GET waits on the queue and gets what is sent; the queue stays.
    get = long_poll(server, sid)
    assert until(lambda: sock._pollers == 1)
    sock.send(packet.Packet(packet.MESSAGE, data="polled"))
    assert get.get(timeout=5) == b"4polled"
    stale = long_poll(server, sid)
    assert until(lambda: sock._pollers == 1) and sock._queue is not None

    # The upgrade, with that GET still waiting: the probe, then the UPGRADE packet, both
    # already there, so the handler runs up to its reader loop before the GET gets a turn.
    # Each look at whether to let the queue go: (tasks in poll(), a queue held after it).
    looks: list[tuple[int, bool]] = []
    release = sock._release_idle_queue

    def looked() -> None:
        release()
        looks.append((sock._pollers, sock._queue is not None))

    sock._release_idle_queue = looked
    ws = GreenWebSocket()
    ws.incoming.put("2probe")
    ws.incoming.put("5")
    handler = gevent.spawn(sock._websocket_handler, ws)
    assert stale.get(timeout=5) == b"6"  # the NOOP that ends the poll
    # The handler's look, upgraded, came while the GET still waited: the queue was kept.
    assert looks[0] == (1, True)
    assert sock.upgraded and ws.wire == ["3probe"]
    assert until(lambda: sock._pollers == 0)
    assert idle_without_queue(sock, variant)  # a writer took the NOOP's turn: let go then
    # The next writer to end lets it go; a message the kernel does not take makes one.
    ws.full = True
    sock.send(packet.Packet(packet.MESSAGE, data="queued"))
    assert until(lambda: ws.wire[-1:] == ["4queued"])
    assert idle_without_queue(sock, variant)
    ws.full = False

    # A GET after the upgrade is refused by Engine.IO and makes no queue.
    environ = engineio_fakes.wsgi_request("GET", f"EIO=4&transport=polling&sid={sid}")
    status: list[str] = []
    server.handle_request(environ, lambda s, h: status.append(s))
    assert status == ["400 BAD REQUEST"]
    assert idle_without_queue(sock, variant)
    sock.send(packet.Packet(packet.MESSAGE, data="direct"))
    assert idle_without_queue(sock, variant)

    end(sock, ws, server, how)
    handler.join(5)
    assert handler.dead and sock.closed and ws.closed.is_set()
    assert ws.wire == ["3probe", "4queued", "4direct", *ENDINGS[how]]
    assert sock._queue is None or sock._queue.unfinished_tasks == 0


def test_a_long_polling_socket_keeps_its_queue(server, variant):
    sid, sock = polling_socket(server)
    made = sock._queue
    for data in ("a", "b"):
        get = long_poll(server, sid)
        assert until(lambda: sock._pollers == 1)
        sock.send(packet.Packet(packet.MESSAGE, data=data))
        assert get.get(timeout=5) == b"4" + data.encode()
        assert sock._queue is made  # no WebSocket writer: nothing lets it go
    get = long_poll(server, sid)
    assert until(lambda: sock._pollers == 1)
    sock.close(wait=False)
    assert get.get(timeout=5) == b"1" and sock.closed and sock._queue is made


def test_a_socket_on_engineio_threading_mode_keeps_its_queue():
    # Threads switch anywhere: another thread may hold the queue it looked up, so it stays.
    eio = engineio.Server(async_mode="threading", ping_interval=60)
    sock = LazyWriterSocket(eio, f"thr-{uuid.uuid4().hex}")
    eio.sockets[sock.sid] = sock
    sock.send(packet.Packet(packet.OPEN, {"sid": sock.sid}))
    made = sock._queue
    ws = engineio_fakes.FakeWebSocket()
    ws._sock = ws
    ws.send_nowait = lambda data: b""
    handler = threading.Thread(target=sock._websocket_handler, args=(ws,), daemon=True)
    handler.start()
    deadline = time.monotonic() + 5
    while not (ws.sent and sock._lazy_writer is None) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ws.sent == ["0" + json.dumps({"sid": sock.sid}, separators=(",", ":"))]
    assert sock._queue is made
    ws.incoming.put(None)
    handler.join(5)
    assert not handler.is_alive() and sock.closed
