"""Through nginx: sticky sessions for long-polling, spread over all workers, survive a death.

All clients come from 127.0.0.1, the case ip_hash gets wrong (one worker for everyone). Each
python-socketio client keeps nginx's affinity cookie in its requests session and sends it on
every polling request and on the WebSocket upgrade, so its session stays on one worker.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from testkit.clients import ChatClient, register
from testkit.cluster import access_log_since

# The default Socket.IO path: long-polling first, then the upgrade to WebSocket.
UPGRADE_PATH = ["polling", "websocket"]
CLIENTS = 60
# A few clients also stay on long-polling for good (a proxy that blocks WebSockets), so the
# test covers polling requests after the handshake as well, not only the upgrade's.
POLLING_ONLY = 6
SENDERS_EVERY = 5  # every fifth client sends one message: 13 messages, 66 x 13 deliveries


def connect_all(
    url: str, tokens: list[str], transports: list[str], reconnection: bool = False
) -> list[ChatClient]:
    with ThreadPoolExecutor(max_workers=10) as pool:
        return list(
            pool.map(
                lambda token: ChatClient(
                    url, token, transports=transports, reconnection=reconnection
                ),
                tokens,
            )
        )


def register_many(url: str, count: int) -> list[str]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return [token for _, token in pool.map(lambda _: register(url), range(count))]


def affinity_key(client: ChatClient) -> str:
    return client.sio.eio.http.cookies["chat_affinity"]


def close_all(clients: list[ChatClient]) -> None:
    for client in clients:
        client.close()


def test_sixty_clients_from_one_address_stay_on_their_worker_and_spread_over_all(shared_cluster):
    cluster = shared_cluster
    log_start = cluster.nginx.access_log.stat().st_size
    worker_logs_start = {w.node_id: len(w.log_text()) for w in cluster.workers}
    tokens = register_many(cluster.url, CLIENTS + POLLING_ONLY)
    clients: list[ChatClient] = []
    try:
        clients = connect_all(cluster.url, tokens[:CLIENTS], UPGRADE_PATH)
        clients += connect_all(cluster.url, tokens[CLIENTS:], ["polling"])
        nodes = [c.wait_for("session")["node"] for c in clients]

        # Spread: one address, yet every worker got clients.
        per_node = {n: nodes.count(n) for n in sorted(set(nodes))}
        assert set(per_node) == {w.node_id for w in cluster.workers}, per_node
        # Each client carries its own affinity key; the upgrade path ended on WebSocket.
        assert len({affinity_key(c) for c in clients}) == len(clients)
        assert [c.sio.transport() for c in clients] == (
            ["websocket"] * CLIENTS + ["polling"] * POLLING_ONLY
        )

        room = f"nginx-{uuid.uuid4().hex[:8]}"
        for client in clients:
            assert client.join(room)["ok"] is True
        sent = [f"message {i}" for i in range(0, len(clients), SENDERS_EVERY)]
        for i, text in zip(range(0, len(clients), SENDERS_EVERY), sent, strict=True):
            assert clients[i].send(room, text)["ok"] is True
        for client in clients:
            client.wait_for("message", lambda m: m["text"] == sent[-1])
            assert [m["text"] for m in client.received("message")] == sent

        # Stay connected: idle for a while (polling-only clients keep a long-poll open), then
        # everyone is still connected on the same worker and still receives.
        time.sleep(5)
        assert all(c.sio.connected for c in clients)
        assert not any(c.received("disconnect") for c in clients)
        assert clients[1].send(room, "still here")["ok"] is True
        for client in clients:
            client.wait_for("message", lambda m: m["text"] == "still here")
        assert [c.received("session")[-1]["node"] for c in clients] == nodes
    finally:
        close_all(clients)

    entries = access_log_since(cluster.nginx.access_log, log_start)
    statuses = defaultdict(int)
    for e in entries:
        statuses[e["status"]] += 1
    assert set(statuses) <= {"200", "201", "101"}, dict(statuses)  # no 400, no 5xx
    # Every upgrade-path client opened one WebSocket, and none opened a second (no client
    # disconnected: checked above).
    assert statuses["101"] == CLIENTS, dict(statuses)
    # The sid-bearing polling requests and WebSocket upgrades of one key all hit one worker.
    upstreams_by_key = defaultdict(set)
    for e in entries:
        if "sid=" in e["uri"]:
            upstreams_by_key[e["key"]].add(e["upstream"])
    assert len(upstreams_by_key) == len(clients)
    assert all(len(u) == 1 for u in upstreams_by_key.values()), upstreams_by_key
    for worker in cluster.workers:
        log = worker.log_text()[worker_logs_start[worker.node_id] :]
        assert "Invalid session" not in log
        assert not re.search(r'HTTP/1\.[01]" 400 ', log)


def test_clients_of_a_killed_worker_reconnect_through_nginx_to_a_survivor(start_cluster):
    cluster = start_cluster(workers=3)
    tokens = register_many(cluster.url, 12)
    clients = connect_all(cluster.url, tokens, UPGRADE_PATH, reconnection=True)
    try:
        first_nodes = [c.wait_for("session")["node"] for c in clients]
        victim = cluster.worker_by_node(max(set(first_nodes), key=first_nodes.count))
        moved = [c for c, n in zip(clients, first_nodes, strict=True) if n == victim.node_id]
        stayed = [c for c in clients if c not in moved]
        log_start = cluster.nginx.access_log.stat().st_size

        victim.kill()  # SIGKILL: no goodbye to its clients, no cleanup

        # Socket.IO clients reconnect by themselves; nginx sends them to surviving workers.
        for client in moved:
            session = client.wait_for("session", lambda s: s["node"] != victim.node_id, timeout=20)
            assert session["node"] in {w.node_id for w in cluster.workers if w.alive()}
        # Everyone, moved or not, chats in one room again.
        room = f"failover-{uuid.uuid4().hex[:8]}"
        for client in clients:
            assert client.join(room)["ok"] is True
        assert moved[0].send(room, "back online")["ok"] is True
        for client in clients:
            client.wait_for("message", lambda m: m["text"] == "back online")
        # The clients that were elsewhere never noticed.
        assert all(len(c.received("session")) == 1 for c in stayed)

        # New visitors are not sent to the dead worker either: every request is answered.
        for _ in range(20):
            assert register(cluster.url)
    finally:
        close_all(clients)
    entries = access_log_since(cluster.nginx.access_log, log_start)
    assert entries
    bad = [e for e in entries if e["status"] not in ("200", "201", "101")]
    assert bad == []


@pytest.mark.parametrize("cookie", ["", "not-a-hex-key", "0123456789abcdef0123456789abcdeg"])
def test_nginx_replaces_a_missing_or_malformed_affinity_cookie(shared_cluster, cookie):
    r = requests.get(
        shared_cluster.url + "/healthz",
        timeout=5,
        headers={"Cookie": f"chat_affinity={cookie}"} if cookie else {},
    )
    assert r.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", r.cookies["chat_affinity"])
    assert r.cookies["chat_affinity"] != cookie


def test_a_valid_affinity_cookie_always_reaches_the_same_worker(shared_cluster):
    for _ in range(3):
        key = uuid.uuid4().hex
        nodes = {
            requests.get(
                shared_cluster.url + "/healthz", timeout=5, cookies={"chat_affinity": key}
            ).json()["node"]
            for _ in range(10)
        }
        assert len(nodes) == 1
        r = requests.get(shared_cluster.url + "/healthz", cookies={"chat_affinity": key}, timeout=5)
        assert "chat_affinity" not in r.cookies  # a client that has a key keeps it
