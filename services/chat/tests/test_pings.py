"""Engine.IO's PINGs come from one PingWheel task per worker (chat/transport/pings.py).

The canaries (test_upstream_*) pin what the wheel relies on in python-engineio; the rest
drive a real engineio.Server over its polling transport (the same Socket objects a
WebSocket uses). A worker with 8,000 idle WebSocket clients pinged through the wheel, none
dropped: `make bench-density` (docs/BENCHMARKS.md, "Connection density").
"""

from __future__ import annotations

import json
import time

import engineio
import engineio.socket
import pytest
from engineio import packet as eio_packet
from engineio_fakes import wsgi_request

from chat.transport import pings
from testkit.processes import wait_for

# Short, so the wheel's first PINGs come within a test; the tick is 0.2 s.
PING_INTERVAL = 0.3


def request(server: engineio.Server, method: str, query: str, body: bytes = b"") -> bytes:
    environ = wsgi_request(method, query, body)
    status: list[str] = []
    out = b"".join(server.handle_request(environ, lambda s, h: status.append(s)))
    assert status == ["200 OK"], out
    return out


def handshake(server: engineio.Server) -> str:
    """A polling session's id (the OPEN packet has been read, so its queue is empty)."""
    body = request(server, "GET", "EIO=4&transport=polling")
    assert body[:1] == b"0", body
    return json.loads(body[1:])["sid"]


def pong(server: engineio.Server, sid: str) -> None:
    request(server, "POST", f"EIO=4&transport=polling&sid={sid}", b"3")


def polled(server: engineio.Server, sid: str) -> list[int]:
    """Packet types a long-poll GET of the session returns (as a client reads them)."""
    body = request(server, "GET", f"EIO=4&transport=polling&sid={sid}")
    return [int(p[:1]) for p in body.split(b"\x1e")]


def queued(server: engineio.Server, sid: str) -> list[int]:
    """Packet types waiting in a session's queue (taken out)."""
    q, out = server.sockets[sid].queue, []
    while not q.empty():
        pkt = q.get_nowait()
        out.append(None if pkt is None else pkt.packet_type)
    return out


@pytest.fixture
def upstream_sockets(monkeypatch):
    """python-engineio's own Socket class for new sessions: a worker app built earlier in
    this process (create_app) installed socket_limits' subclass, which holds a PONG until
    its PING was handed out. The canaries are about upstream alone."""
    monkeypatch.setattr(engineio.socket, "Socket", pings._EngineIOSocket)


def test_upstream_engineio_schedules_a_ping_after_the_handshake_and_after_each_pong(
    monkeypatch, upstream_sockets
):
    # When this fails, python-engineio no longer asks schedule_ping for the next PING: the
    # wheel would ping nobody, and clients would drop after pingInterval + pingTimeout.
    calls: list[str] = []
    monkeypatch.setattr(pings._EngineIOSocket, "schedule_ping", lambda self: calls.append(self.sid))
    server = engineio.Server(async_mode="threading")
    sid = handshake(server)
    assert calls == [sid]
    pong(server, sid)
    assert calls == [sid, sid]


def test_upstream_engineio_send_ping_waits_the_interval_then_sets_last_ping_and_pings(
    monkeypatch, upstream_sockets
):
    # What the wheel does in _send_ping's place; when this fails, compare it with the wheel.
    server = engineio.Server(async_mode="threading", ping_interval=7)
    sid = handshake(server)
    sock = server.sockets[sid]
    started: list = []
    monkeypatch.setattr(server, "start_background_task", lambda target: started.append(target))
    sock.last_ping = 1.0
    pings._engineio_schedule_ping(sock)
    assert started == [sock._send_ping] and sock.last_ping is None

    slept: list[float] = []
    monkeypatch.setattr(server, "sleep", lambda seconds: slept.append(seconds))
    sock._send_ping()
    assert slept == [7] and sock.last_ping is not None
    assert queued(server, sid) == [eio_packet.PING]
    sock.closing = True
    sock._send_ping()
    assert queued(server, sid) == []


def test_a_worker_app_pings_through_the_wheel(app):
    from chat.extensions import socketio

    assert isinstance(socketio.server.eio.chat_ping_wheel, pings.PingWheel)


def test_the_wheel_pings_each_open_socket_once_after_the_interval_and_again_after_its_pong():
    server = engineio.Server(async_mode="threading", ping_interval=PING_INTERVAL)
    wheel = pings.install(server)
    closed = handshake(server)
    server.sockets[closed].closing = True  # as Engine.IO marks a socket being closed
    sids = [handshake(server) for _ in range(3)]
    assert len(wheel) == 4

    # In due order: once the last socket has its PING, the closed one (first) was passed.
    wait_for(lambda: not server.sockets[sids[-1]].queue.empty(), 10, "the wheel's PINGs")
    for sid in sids:
        assert polled(server, sid) == [eio_packet.PING]
        assert server.sockets[sid].last_ping is not None
    assert queued(server, closed) == []
    assert len(wheel) == 0

    # The PONG puts the socket back on the wheel; the next PING follows an interval later.
    pong(server, sids[0])
    assert len(wheel) == 1 and server.sockets[sids[0]].last_ping is None
    wait_for(lambda: not server.sockets[sids[0]].queue.empty(), 10, "the second PING")
    assert polled(server, sids[0]) == [eio_packet.PING]


def test_a_server_without_a_wheel_keeps_engineio_s_own_ping_task(monkeypatch):
    server = engineio.Server(async_mode="threading")
    pings.install(engineio.Server(async_mode="threading"))  # patched, for another server
    started: list = []
    monkeypatch.setattr(server, "start_background_task", lambda target: started.append(target))
    sid = handshake(server)
    # (Engine.IO's service task starts with the first session too.)
    assert [t for t in started if t != server._service_task] == [server.sockets[sid]._send_ping]


def test_a_failing_socket_does_not_stop_the_others_pings(monkeypatch):
    server = engineio.Server(async_mode="threading", ping_interval=PING_INTERVAL)
    wheel = pings.PingWheel(server)
    monkeypatch.setattr(wheel, "_task", object())  # no background task: driven by hand
    first, second = handshake(server), handshake(server)

    def broken(pkt):
        raise RuntimeError("broken transport")

    monkeypatch.setattr(server.sockets[first], "send", broken)
    for sid in (first, second):
        server.sockets[sid].last_ping = None
        wheel.add(server.sockets[sid])
    assert wheel.ping_due(now=0.0) == 0  # nothing due yet
    assert wheel.ping_due(now=float("inf")) == 1
    assert queued(server, second) == [eio_packet.PING]


def test_upstream_engineio_starts_no_service_task_when_told_not_to(monkeypatch):
    # The wheel turns Engine.IO's client monitor off through this switch and does its work;
    # when this fails, the monitor would run beside the wheel (harmless, but the cost is back).
    server = engineio.Server(async_mode="threading")
    assert server.start_service_task is True  # the default: monitor_clients
    assert (
        engineio.Server(async_mode="threading", monitor_clients=False).start_service_task is False
    )
    server.start_service_task = False
    started: list = []
    monkeypatch.setattr(server, "start_background_task", lambda target: started.append(target))
    handshake(server)
    assert server._service_task not in started


def test_upstream_engineio_check_ping_timeout_closes_a_socket_pinged_too_long_ago():
    server = engineio.Server(async_mode="threading", ping_timeout=5)
    sid = handshake(server)
    sock = server.sockets[sid]
    # Engine.IO's own method (the socket class may be a subclass of ours: socket_limits).
    check = pings._EngineIOSocket.check_ping_timeout
    sock.last_ping = time.time() - 1
    assert check(sock) is True and not sock.closed
    sock.last_ping = time.time() - 6
    assert check(sock) is False and sock.closed


def test_a_socket_that_does_not_answer_its_ping_is_closed_and_dropped_by_the_wheel():
    server = engineio.Server(async_mode="threading", ping_interval=PING_INTERVAL, ping_timeout=1)
    pings.install(server)
    assert server.start_service_task is False
    disconnected: list[str] = []
    server.on("disconnect", lambda sid, reason: disconnected.append(sid))
    silent, answering = handshake(server), handshake(server)
    wait_for(lambda: not server.sockets[answering].queue.empty(), 10, "the first PINGs")
    assert polled(server, answering) == [eio_packet.PING]
    pong(server, answering)  # the other one never answers

    # ping_timeout (1 s) plus a tick after its PING, the silent socket is closed and gone.
    wait_for(lambda: silent not in server.sockets, 10, "the silent socket closed")
    assert disconnected == [silent]
    assert answering in server.sockets and not server.sockets[answering].closed


def test_a_closed_socket_leaves_the_server_at_its_next_turn_on_the_wheel(monkeypatch):
    server = engineio.Server(async_mode="threading", ping_interval=PING_INTERVAL)
    wheel = pings.PingWheel(server)
    monkeypatch.setattr(wheel, "_task", object())  # no background task: driven by hand
    sid = handshake(server)
    sock = server.sockets[sid]
    sock.last_ping = None
    wheel.add(sock)
    sock.close(wait=False, abort=True)  # closed by the server; nobody polls it again
    assert sid in server.sockets
    due = float("inf")  # whatever the monotonic clock says
    assert wheel.ping_due(now=due) == 0 and wheel.check_pongs(now=due) == 0
    assert sid not in server.sockets and len(wheel) == 0 and wheel.awaiting_pong == 0


def test_a_socket_still_closing_is_dropped_once_its_close_has_finished(monkeypatch):
    server = engineio.Server(async_mode="threading", ping_interval=PING_INTERVAL)
    wheel = pings.PingWheel(server)
    monkeypatch.setattr(wheel, "_task", object())  # no background task: driven by hand
    sid = handshake(server)
    sock = server.sockets[sid]
    sock.last_ping = None
    wheel.add(sock)
    sock.closing = True  # a close running in a task of its own (socket_limits' cut)
    due = float("inf")  # whatever the monotonic clock says
    wheel.ping_due(now=due)
    wheel.check_pongs(now=due)
    assert sid in server.sockets and wheel.awaiting_pong == 1  # looked at again next tick
    sock.closed = True
    wheel.check_pongs(now=due)
    assert sid not in server.sockets and wheel.awaiting_pong == 0
