"""Through nginx: one client address holds a bounded number of connections, and a request head
that trickles in is cut.

Real nginx (testkit.cluster renders chat.conf.template with NGINX_CONNECTIONS_PER_ADDRESS),
real workers under each async mode, real WebSockets from one address (127.0.0.1).
"""

from __future__ import annotations

import socket
import time

import pytest
import requests
import websocket

from testkit.clients import register
from testkit.processes import ASYNC_MODES
from testkit.rawsocket import RawWebSocket, ws_url

pytestmark = pytest.mark.e2e

PER_ADDRESS = 8  # NGINX_CONNECTIONS_PER_ADDRESS for these clusters
NGINX_HEADER_TIMEOUT = 10  # client_header_timeout in chat.conf.template


@pytest.mark.parametrize("async_mode", ASYNC_MODES)
def test_connections_per_address_are_limited_by_nginx(start_cluster, async_mode):
    cluster = start_cluster(workers=1, async_mode=async_mode, connections_per_address=PER_ADDRESS)
    _, token = register(cluster.url)
    held: list[RawWebSocket] = []
    try:
        for _ in range(PER_ADDRESS):
            raw = RawWebSocket(cluster.url)
            assert raw.connect({"token": token}).startswith("40")
            held.append(raw)
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(ws_url(cluster.url), timeout=5, suppress_origin=True)
        assert refused.value.status_code == 429
        # Any request from the address counts while the WebSockets are open: REST too.
        assert requests.get(cluster.url + "/healthz", timeout=5).status_code == 429
        held.pop().close()
        # One slot free again: nginx counts it once it has seen the close (a liveness bound).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if requests.get(cluster.url + "/healthz", timeout=5).status_code == 200:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("a closed WebSocket's slot was not released")
        again = RawWebSocket(cluster.url)
        assert again.connect({"token": token}).startswith("40")
        held.append(again)
        print(
            f"\n[{async_mode}] {PER_ADDRESS} WebSockets from 127.0.0.1 held; the next handshake "
            f"and a REST call got 429; after one closed, a new one connected"
        )
    finally:
        for raw in held:
            raw.close()


def test_a_request_head_that_trickles_in_is_cut_by_nginx(shared_cluster):
    host, port = shared_cluster.url.split("://", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=NGINX_HEADER_TIMEOUT + 10)
    started = time.monotonic()
    try:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n".encode())
        answer = b""
        for line in range(NGINX_HEADER_TIMEOUT + 10):  # one header line a second, bounded
            try:
                sock.sendall(f"X-Trickle-{line}: {line}\r\n".encode())
            except OSError:
                break
            sock.settimeout(1)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            answer += chunk
            if not chunk:
                break
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    print(f"\nnginx cut a trickling request head after {elapsed:.1f} s: {answer[:40]!r}")
    assert elapsed < NGINX_HEADER_TIMEOUT + 5
    assert elapsed >= NGINX_HEADER_TIMEOUT - 1
