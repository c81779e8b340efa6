"""Connections that hold a worker's resources without using them are closed within a bound.

Against a real worker process reached directly (no nginx in front), under each async mode:
Engine.IO sessions that never complete a Socket.IO CONNECT (AUTH_TIMEOUT_SECONDS), HTTP
requests whose headers trickle in one line at a time (slowloris, HEADER_TIMEOUT_SECONDS), and
a member that stops reading but answers pings blindly (a PONG counts only once its PING was
written). 250 connections of the first two kinds exhausted a worker's file descriptors; the
figures printed are what was measured.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import threading
import time
import uuid

import pytest
import websocket

from testkit.clients import ChatClient, assert_still_serving, register, worker_metric
from testkit.processes import ASYNC_MODES, ChatWorker, wait_for
from testkit.rawsocket import RawPolling, RawWebSocket, SlowConsumer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("async_mode", ASYNC_MODES, indirect=True, scope="module"),
]

AUTH_TIMEOUT = 2  # AUTH_TIMEOUT_SECONDS
HEADER_TIMEOUT = 3  # HEADER_TIMEOUT_SECONDS
# The sweeper looks once a second; the rest is room for a busy machine (a liveness bound).
CLOSE_MARGIN_SECONDS = 5
IDLE_WEBSOCKETS = 50
IDLE_POLLING = 10
REFUSED_CONNECTS = 5
SLOW_HEADER_CONNECTIONS = 40
SILENT_CONNECTIONS = 10


# The settings of the module's worker (the `worker` fixture in conftest.py).
WORKER_ENV = {
    "AUTH_TIMEOUT_SECONDS": str(AUTH_TIMEOUT),
    "HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
}


def closed_after(raw: RawWebSocket, started: float, bound: float) -> float:
    """Seconds from `started` until the server closed this WebSocket (reading what comes)."""
    deadline = started + bound
    try:
        while time.monotonic() < deadline:
            try:
                raw.recv(timeout=max(0.05, deadline - time.monotonic()))
            except websocket.WebSocketTimeoutException:
                continue
    except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
        return time.monotonic() - started
    raise AssertionError(f"still open after {bound} s")


def test_sessions_that_never_authenticate_are_closed(worker):
    _, token = register(worker.url)
    fds_before = worker.open_fds()
    cut_before = worker_metric(worker.url, "chat_sockets_cut_total", reason="unauthenticated")
    started = time.monotonic()
    idle = [RawWebSocket(worker.url) for _ in range(IDLE_WEBSOCKETS)]
    refused = [RawWebSocket(worker.url) for _ in range(REFUSED_CONNECTS)]
    for raw in refused:  # a CONNECT with a bad token leaves the session open, unauthenticated
        assert raw.connect({"token": "not-a-token"}).startswith("44")
    polling = [RawPolling(worker.url) for _ in range(IDLE_POLLING)]
    member = RawWebSocket(worker.url)
    assert member.connect({"token": token}).startswith("40")
    fds_open = worker.open_fds()

    bound = AUTH_TIMEOUT + CLOSE_MARGIN_SECONDS
    times = sorted(closed_after(raw, started, bound) for raw in idle + refused)
    expected = IDLE_WEBSOCKETS + REFUSED_CONNECTS + IDLE_POLLING
    wait_for(
        lambda: (
            worker_metric(worker.url, "chat_sockets_cut_total", reason="unauthenticated")
            - cut_before
            >= expected
        ),
        bound,
        "every unauthenticated session cut",
    )
    for session in polling:  # the session is gone: its next request is refused
        assert session.get().status_code == 400
        session.http.close()  # the client's kept-alive HTTP connection, not the session
    # The authenticated session was not touched, and still answers.
    assert member.call("join", {"room": "general"})["ok"] is True
    member.close()
    wait_for(lambda: worker.open_fds() <= fds_before + 2, 10, "descriptors released")
    cut = worker_metric(worker.url, "chat_sockets_cut_total", reason="unauthenticated")
    print(
        f"\n{len(idle) + len(refused)} WebSocket + {IDLE_POLLING} polling sessions without "
        f"a (valid) CONNECT: closed {times[0]:.2f}-{times[-1]:.2f} s after opening "
        f"(AUTH_TIMEOUT_SECONDS={AUTH_TIMEOUT}); open fds {fds_before} -> {fds_open} -> "
        f"{worker.open_fds()}; cut {cut - cut_before:.0f}"
    )
    assert cut - cut_before == expected
    assert times[0] >= AUTH_TIMEOUT - 0.1, "closed before its time"
    assert worker.tracebacks() == 0
    assert_still_serving(worker.url, token)


def test_slow_headers_and_silent_connections_are_cut(worker):
    fds_before = worker.open_fds()
    port = worker.port
    started = time.monotonic()
    address = ("127.0.0.1", port)
    trickling = [socket.create_connection(address) for _ in range(SLOW_HEADER_CONNECTIONS)]
    silent = [socket.create_connection(address) for _ in range(SILENT_CONNECTIONS)]
    for sock in trickling:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
    # The worker holding every connection: a peak, not a state that lasts. On a loaded
    # machine the first ones may reach HEADER_TIMEOUT and be cut before the last is accepted,
    # so stop looking there; the cut is asserted from the clients' side below.
    peak = [worker.open_fds()]

    def holding_every_connection() -> bool:
        peak.append(worker.open_fds())
        held = peak[-1] >= fds_before + SLOW_HEADER_CONNECTIONS + SILENT_CONNECTIONS
        return held or time.monotonic() - started >= HEADER_TIMEOUT - 0.5

    wait_for(holding_every_connection, 10, "the worker holding every connection")
    fds_held = max(peak)

    served: list[float] = []
    probe = threading.Thread(target=lambda: served.append(assert_still_serving(worker.url)))
    probe.start()
    # One more header line a second on each (the attack used one every 5 s: slower still).
    closed_at: dict[socket.socket, float] = {}
    open_ = trickling + silent
    bound = HEADER_TIMEOUT + CLOSE_MARGIN_SECONDS
    next_line = time.monotonic() + 1
    line = 0
    while open_ and time.monotonic() - started < bound:
        if time.monotonic() >= next_line:
            line += 1
            for sock in open_:
                if sock in trickling:
                    with contextlib.suppress(OSError):  # closed: seen by the read below
                        sock.sendall(f"X-Trickle-{line}: {line}\r\n".encode())
            next_line += 1
        readable, _, _ = select.select(open_, [], [], 0.1)
        for sock in readable:
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:  # EOF (a response, if any, came before it)
                closed_at[sock] = time.monotonic() - started
                open_.remove(sock)
    probe.join(30)
    for sock in trickling + silent:
        sock.close()
    times = sorted(closed_at.values())
    print(
        f"\n{SLOW_HEADER_CONNECTIONS} connections sending a header line a second and "
        f"{SILENT_CONNECTIONS} sending nothing: {len(closed_at)} closed by the worker "
        f"{times[0] if times else float('nan'):.2f}-{times[-1] if times else float('nan'):.2f} s "
        f"after opening (HEADER_TIMEOUT_SECONDS={HEADER_TIMEOUT}); open fds {fds_before} -> "
        f"{fds_held} -> {worker.open_fds()}; a normal client's round trip meanwhile "
        f"{served[0] * 1000 if served else float('nan'):.0f} ms"
    )
    assert not open_, f"{len(open_)} connections still open after {bound} s"
    assert times[0] >= HEADER_TIMEOUT - 0.1, "cut before its time"
    assert served, "a normal client was not served meanwhile"
    wait_for(lambda: worker.open_fds() <= fds_before + 2, 10, "descriptors released")
    assert worker.tracebacks() == 0


def test_a_kept_alive_connection_may_idle_past_the_header_timeout(worker):
    """nginx reuses idle connections to a worker for up to 60 s: the deadline covers a request's
    head, not the wait between requests."""
    conn = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        first = conn.getresponse()
        first.read()
        assert first.status == 200
        time.sleep(HEADER_TIMEOUT + 1)
        conn.request("GET", "/healthz")  # the same connection (http.client reuses it)
        second = conn.getresponse()
        second.read()
        assert second.status == 200
    finally:
        conn.close()


def test_a_pong_that_answers_no_ping_it_read_does_not_keep_a_member(tmp_path, async_mode):
    """A member that stops reading but sends a PONG every half second is still cut off: its
    PING sits behind the backlog it never read. (The byte bound is set out of the way here;
    the reading member beside it, on the same short heartbeat, stays.)"""
    worker = ChatWorker(
        tmp_path,
        env={
            "ASYNC_MODE": async_mode,
            "PING_INTERVAL_SECONDS": "2",
            "PING_TIMEOUT_SECONDS": "2",
            "MAX_SOCKET_QUEUE_BYTES": str(64 << 20),
            "RATE_LIMIT_MESSAGES": "100000",
        },
    )
    room = f"pong-{uuid.uuid4().hex[:6]}"
    slow = SlowConsumer(worker.url, register(worker.url)[1], room)
    sender = ChatClient(worker.url, register(worker.url)[1])
    reader = ChatClient(worker.url, register(worker.url)[1])
    stop = threading.Event()

    def blind_pongs() -> None:
        while not stop.wait(0.5):
            try:
                slow._send_frame("3")
            except OSError:
                return

    ponger = threading.Thread(target=blind_pongs, daemon=True)
    try:
        assert sender.join(room)["ok"] and reader.join(room)["ok"]
        ponger.start()
        started = time.monotonic()
        text = "\U0001f600" * 3_900  # 47 KB on the wire: 100 of them fill the kernel's buffers
        for i in range(100):
            assert sender.send(room, f"{i} {text}")["ok"]
        sent = time.monotonic() - started
        reader.wait_for("message", lambda m: m["text"].startswith("99 "), timeout=30)
        # Cut off: the worker counts only the sender and the reader as connected. (Reading
        # the slow socket to see its end would deliver the PINGs and make it a live client.)
        wait_for(
            lambda: worker_metric(worker.url, "chat_connected_clients") == 2,
            30,
            "the slow member disconnected",
        )
        elapsed = time.monotonic() - started
        stop.set()
        assert reader.sio.connected and reader.call("join", {"room": room})["ok"]
        cut = {
            reason: worker_metric(worker.url, "chat_sockets_cut_total", reason=reason)
            for reason in ("ping_timeout", "send_queue")
        }
        print(
            f"\n[{async_mode}] blind PONGs every 0.5 s, nothing read: disconnected "
            f"{elapsed:.1f} s after the first of 100 x 47 KB messages (the last was sent at "
            f"{sent:.1f} s); cut by the worker {cut}; the reading member stayed"
        )
        assert cut["send_queue"] == 0
        if async_mode == "gevent":
            # eventlet's sockets carry Engine.IO's read/write timeout (interval + timeout),
            # which may end the blocked write first; gevent's have none.
            assert cut["ping_timeout"] == 1
        assert len(reader.received("message")) == 100
        assert worker.tracebacks() == 0
    finally:
        stop.set()
        slow.close()
        sender.close()
        reader.close()
        worker.stop()
