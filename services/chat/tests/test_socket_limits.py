"""Canaries for what chat/transport/ (socket_limits, eventlet_server, http_server) relies on
inside python-engineio, eventlet and gevent, and the limits themselves on one Engine.IO socket
(no server process).

Each `test_upstream_*` fails the day upstream changes what the reach relies on; the versions
they were written against are pinned in TESTED so an upgrade is looked at, not assumed.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import threading
import time

import engineio
import engineio.server
import engineio.socket
import pytest
from engineio import packet
from engineio_fakes import FakeWebSocket

from chat import metrics
from chat.transport import socket_limits
from chat.transport.socket_limits import LimitedSocket
from chat.transport.upstream import engineio_socket_class

# python-engineio's own class: a worker app built earlier in this process (pytest runs many
# files per process) installed the project's subclass as engineio.socket.Socket.
ENGINEIO_SOCKET = engineio_socket_class()

TESTED = {
    "python-engineio": "4.15.",
    "python-socketio": "5.18.",
    "eventlet": "0.41.",
    "gevent": "26.",
}


def sample(name: str, **labels: str) -> float:
    """A worker metric's value as /metrics reports it (0 before its first increment)."""
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("package", sorted(TESTED))
def test_upstream_versions_are_the_tested_ones(package):
    version = importlib.metadata.version(package)
    assert version.startswith(TESTED[package]), (
        f"{package} {version}: re-check the reaches in chat/transport/, then update TESTED"
    )


def test_upstream_engineio_creates_sockets_through_the_module_attribute():
    source = inspect.getsource(engineio.server.Server._handle_connect)
    assert "socket.Socket(self, sid)" in source


@pytest.fixture
def eio(monkeypatch):
    monkeypatch.setattr(LimitedSocket, "max_queue_bytes", 1000)
    server = engineio.Server(async_mode="threading", ping_interval=60)
    yield server
    for sock in list(server.sockets.values()):
        sock.closed = True


def new_socket(server, sid: str = "s1") -> LimitedSocket:
    sock = LimitedSocket(server, sid)
    server.sockets[sid] = sock
    return sock


def test_upstream_engineio_writer_polls_again_only_after_writing_its_batch(eio):
    """A PONG counts once the writer has written its PING: that is, when it comes back to poll()."""
    sock = new_socket(eio)
    ws = FakeWebSocket()
    handler = threading.Thread(target=sock._websocket_handler, args=(ws,), daemon=True)
    handler.start()
    ws.hold.clear()
    sock.last_ping = time.time()
    sock.send(packet.Packet(packet.PING))
    assert ws.writing.wait(5)  # the writer is midway through writing the PING
    assert sock.queued_bytes > 0
    ws.incoming.put("3")  # the PONG, before the PING was written
    deadline = time.monotonic() + 5
    while not sock._early_pong and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sock._early_pong and sock.last_ping, "taken before its PING was written"
    ws.hold.set()  # the write completes; the writer polls again
    deadline = time.monotonic() + 5
    while sock.last_ping and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sock.last_ping is None, "the PONG was not taken once its PING was written"
    assert sock.queued_bytes == 0
    assert ws.sent == ["2"]
    ws.incoming.put(None)
    handler.join(5)
    assert not handler.is_alive()


def test_upstream_engineio_websocket_loop_reads_through_wait(eio):
    """An undecodable message closes the transport instead of raising out of the loop."""
    sock = new_socket(eio)
    ws = FakeWebSocket()
    before = sample("chat_protocol_errors_total", kind="undecodable")
    ws.incoming.put("")  # no packet type: Engine.IO's decoder raises on it
    handler = threading.Thread(target=sock._websocket_handler, args=(ws,), daemon=True)
    handler.start()
    handler.join(5)
    assert not handler.is_alive() and sock.closed
    assert sample("chat_protocol_errors_total", kind="undecodable") == before + 1


def test_a_pong_with_no_ping_outstanding_is_dropped(eio):
    sock = new_socket(eio)
    sock.last_ping = None
    sock.receive(packet.Packet(packet.PONG))
    assert sock.last_ping is None and not sock._early_pong


def test_long_polling_counts_a_ping_written_once_a_get_takes_it(eio):
    sock = new_socket(eio)
    sock.last_ping = time.time()
    sock.send(packet.Packet(packet.PING))
    sock.receive(packet.Packet(packet.PONG))  # blind: its PING is still queued
    assert sock.last_ping
    assert [p.packet_type for p in sock.poll()] == [packet.PING]  # a GET takes it
    assert sock.last_ping is None  # the early PONG counts now


def test_bytes_past_the_bound_cut_the_socket_and_free_its_queue(eio):
    sock = new_socket(eio)
    cut_before = sample("chat_sockets_cut_total", reason="send_queue")
    for _ in range(4):  # the first at the head of the line, 903 bytes behind it
        sock.send(packet.Packet(packet.MESSAGE, data="x" * 300))
    assert sock.queued_bytes == 1204 and sock.queue.qsize() == 4
    sock.send(packet.Packet(packet.MESSAGE, data="x" * 300))  # 1,204 behind the head > 1,000
    assert sample("chat_sockets_cut_total", reason="send_queue") == cut_before + 1
    deadline = time.monotonic() + 5
    while "s1" in eio.sockets and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sock.closed and "s1" not in eio.sockets
    # The 4 messages were dropped; what is left is the close's end-of-queue marker alone.
    left = []
    while not sock.queue.empty():
        left.append(sock.queue.get_nowait())
    assert left == [None]


def test_a_reply_larger_than_the_bound_is_admitted_at_the_head_of_the_line(eio):
    """A page of history may be larger than the bound; a client that reads must still get it."""
    sock = new_socket(eio)
    sock._transport = object()  # on the WebSocket transport
    sock.send(packet.Packet(packet.MESSAGE, data="h" * 5000))
    sock.send(packet.Packet(packet.MESSAGE, data="x" * 900))  # behind it: within the bound
    assert sock.queue.qsize() == 2 and not sock._cut
    assert len(sock.poll()) == 2  # the writer takes both; the big one heads its batch
    sock.send(packet.Packet(packet.MESSAGE, data="y" * 98))  # 901 + 99 behind the head
    assert not sock._cut
    sock.send(packet.Packet(packet.MESSAGE, data="z"))  # 1,002 behind it
    assert sock._cut


def test_what_a_writer_has_taken_counts_until_it_polls_again(eio):
    sock = new_socket(eio)
    sock._transport = object()  # on the WebSocket transport
    sock.send(packet.Packet(packet.MESSAGE, data="x" * 600))
    assert len(sock.poll()) == 1
    assert sock.queued_bytes == 601  # taken, not yet written
    sock.send(packet.Packet(packet.MESSAGE, data="y" * 300))
    assert sock.queued_bytes == 902
    sock.queue.put(None)
    sock.poll()  # the writer is back: the first batch was written
    assert sock.queued_bytes == 301


def test_sessions_are_swept_after_the_auth_timeout(eio, monkeypatch):
    monkeypatch.setattr(LimitedSocket, "auth_timeout_seconds", 2)
    socket_limits._unauthenticated.clear()
    stranger, member = new_socket(eio, "stranger"), new_socket(eio, "member")

    class Manager:
        def sid_from_eio_sid(self, eio_sid, namespace):
            return "sio-member" if eio_sid == "member" and namespace == "/" else None

    class SioServer:
        manager = Manager()

    SioServer.eio = eio
    opened = stranger.opened_at
    assert socket_limits.sweep(SioServer, now=opened + 1.9) == 0
    assert socket_limits.sweep(SioServer, now=opened + 2.1) == 1
    assert stranger._cut and not member._cut
    assert not socket_limits._unauthenticated


def test_upstream_engineio_sets_read_timeouts_on_the_transports__sock_or_socket():
    # CheckedWebSocket forwards these names to the transport it wraps; socket_limits'
    # _tcp_socket finds the TCP connection through them.
    source = inspect.getsource(ENGINEIO_SOCKET._websocket_handler)
    assert "for attr in ['_sock', 'socket']" in source


def test_upstream_engineio_gevent_wrapper_holds_gevent_websockets_object_as__sock():
    # direct_write reaches BoundedWebSocket.send_nowait, and socket_limits the TCP socket
    # (`_sock.handler.socket`), through engineio's gevent wrapper's `_sock`.
    from engineio.async_drivers.gevent import WebSocketWSGI

    ws = type("WS", (), {"version": "13", "path": "/", "origin": None, "protocol": None})()
    seen: list = []
    WebSocketWSGI(seen.append, None)({"wsgi.websocket": ws}, None)
    assert seen[0]._sock is ws


def test_upstream_engineio_socket_sends_through_the_queue_the_limits_count():
    # LimitedSocket counts bytes at send() and poll(); direct_write hands its remainders to
    # the same queue. When this fails, Engine.IO queues some other way.
    assert "self.queue.put(pkt)" in inspect.getsource(ENGINEIO_SOCKET.send)
    poll = inspect.getsource(ENGINEIO_SOCKET.poll)
    assert "self.queue.get(" in poll and "self.queue.task_done()" in poll


def test_upstream_engineio_marks_an_upgrade_with_upgrading_then_upgraded():
    # direct_write counts the writer as idle only on an upgraded socket that is not upgrading
    # (a long-poll GET from before the upgrade may still be waiting in poll()).
    source = inspect.getsource(ENGINEIO_SOCKET._websocket_handler)
    assert "self.upgrading = True" in source
    assert source.index("self.upgraded = True") < source.rindex("self.upgrading = False")


# --- the queue made on first use -------------------------------------------------------------


def test_upstream_engineio_socket_init_sets_what_ours_sets_and_the_queue():
    # LimitedSocket.__init__ does what BaseSocket.__init__ does but make the queue. When this
    # fails, Engine.IO's socket gained or lost an attribute: copy the change there.
    server = engineio.Server(async_mode="threading")
    theirs = vars(ENGINEIO_SOCKET(server, "theirs"))
    ours = vars(LimitedSocket(server, "ours"))
    assert type(theirs["queue"]) is type(server.create_queue())
    engineio_attributes = set(theirs) - {"queue"}
    assert engineio_attributes <= set(ours) and "queue" not in ours
    for name in engineio_attributes - {"sid", "last_ping"}:
        assert ours[name] == theirs[name], name
    assert ours["sid"] == "ours" and abs(ours["last_ping"] - theirs["last_ping"]) < 60
    socket_limits._unauthenticated.pop("ours", None)


def test_upstream_engineio_uses_the_queue_only_to_put_get_task_done_and_join():
    # LimitedSocket.queue makes the queue at its first use, and lazy_writer lets an idle one
    # go: that is sound while Engine.IO only looks `self.queue` up to put, get and join
    # (a get that waits holds it only inside poll()). When this fails, read the new uses.
    source = inspect.getsource(ENGINEIO_SOCKET)
    uses = {
        line.split("self.queue", 1)[1].split("(")[0]
        for line in source.splitlines()
        if "self.queue" in line
    }
    assert uses == {".get", ".task_done", ".put", ".join"}, uses


def test_a_socket_makes_its_queue_at_the_first_use_and_keeps_it():
    server = engineio.Server(async_mode="threading")
    sock = LimitedSocket(server, "lazy")
    assert sock._queue is None and sock._queued_count() == 0  # the look makes none
    sock.send(packet.Packet(packet.OPEN, {"sid": "lazy"}))
    made = sock.queue
    assert made is sock._queue and sock._queued_count() == 1 and sock.queued_bytes > 0
    assert sock.poll()[0].packet_type == packet.OPEN and sock.queue is made
    sock.cut("test", "cut by the test")
    socket_limits._unauthenticated.pop("lazy", None)
