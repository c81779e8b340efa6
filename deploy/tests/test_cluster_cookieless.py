"""Clients that keep no cookies stay on their worker through nginx: the sid names it.

The official socket.io client on Node, with its default options (long-polling first, then the
upgrade; Node keeps no cookies), was spread by nginx over all workers request by request and
got 400 "Session ID unknown" for most of them. Workers now issue Engine.IO session ids that
start with their SID_TAG, and nginx sends every request carrying one to that worker
(deploy/nginx/templates/chat.conf.template). Real nginx, three real workers, the real client.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from testkit.clients import register
from testkit.cluster import access_log_since
from testkit.processes import REPO_ROOT, require_program, wait_for

NODE_SCRIPT = Path(__file__).parent / "node" / "cookieless_clients.js"
NODE_MODULES = REPO_ROOT / "loadtest" / "node-peer" / "node_modules"  # pinned socket.io-client
DEFAULT_CLIENTS = 6
POLLING_ONLY_CLIENTS = 2  # no WebSocket at all (a proxy that blocks it): every request polls
MESSAGES = 10
# Liveness bound for the whole Node run on a busy two-core machine (it takes a few seconds).
RUN_TIMEOUT_SECONDS = 120


def socketio_requests(access_log: Path, offset: int) -> list[dict]:
    """The /socket.io/ requests nginx logged after byte `offset`, with their query parsed."""
    out = []
    for entry in access_log_since(access_log, offset):
        url = urlsplit(entry["uri"])
        if url.path.startswith("/socket.io/"):
            out.append({**entry, "query": {k: v[0] for k, v in parse_qs(url.query).items()}})
    return out


def run_node_clients(config: dict) -> list[dict]:
    node = require_program("node")
    assert (NODE_MODULES / "socket.io-client").is_dir(), "run `make peer-deps` first"
    out = subprocess.run(
        [node, str(NODE_SCRIPT), json.dumps(config)],
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_cookieless_node_clients_keep_their_sessions_and_every_message_is_acked_once(
    shared_cluster,
):
    cluster = shared_cluster
    room = f"cookieless-{uuid.uuid4().hex[:8]}"
    clients = []
    for i in range(DEFAULT_CLIENTS + POLLING_ONLY_CLIENTS):
        name, token = register(cluster.url)
        clients.append({"name": name, "token": token, "pollingOnly": i >= DEFAULT_CLIENTS})
    access_log = cluster.nginx.access_log
    offset = access_log.stat().st_size

    reports = run_node_clients(
        {"url": cluster.url, "room": room, "messages": MESSAGES, "clients": clients}
    )

    for client, report in zip(clients, reports, strict=True):
        expected_transports = ["polling"] if client["pollingOnly"] else ["polling", "websocket"]
        assert report["errors"] == [], report
        assert report["connectErrors"] == [] and report["disconnects"] == [], report
        assert report["acked"] == MESSAGES, report
        assert report["transports"] == expected_transports, report
        # The session lives on the worker its id names.
        assert report["sid"].split(".", 1)[0] == report["node"], report
    # nginx placed the handshakes of cookie-less clients on more than one worker, so the
    # test would see the 400s if requests after the handshake were placed the same way.
    assert len({r["node"] for r in reports}) > 1, reports

    # Every message stored exactly once.
    r = requests.get(
        f"{cluster.url}/api/rooms/{room}/messages",
        params={"limit": 100},
        headers={"Authorization": f"Bearer {clients[0]['token']}"},
        timeout=10,
    )
    r.raise_for_status()
    texts = sorted(m["text"] for m in r.json()["messages"])
    assert texts == sorted(f"{c['name']} {i}" for c in clients for i in range(MESSAGES))

    # nginx's view: no request refused, and every request carrying a sid reached the worker
    # that issued it. A WebSocket is logged when it closes, so wait for those lines.
    upgraded = {r["sid"] for r in reports if len(r["transports"]) == 2}

    def websockets_logged() -> bool:
        entries = socketio_requests(access_log, offset)
        return upgraded <= {
            e["query"].get("sid") for e in entries if e["query"].get("transport") == "websocket"
        }

    wait_for(websockets_logged, 30, "nginx to log every WebSocket")
    ports = {w.node_id: f"127.0.0.1:{w.port}" for w in cluster.workers}
    sids = {r["sid"] for r in reports}
    entries = socketio_requests(access_log, offset)
    ours = [e for e in entries if e["query"].get("sid") in sids]

    # 499 is nginx's record of a client that closed its connection first, not a refusal: a
    # long-poll GET still held by the worker (no upstream status yet) when its client closed.
    # Anything else not 200/101 is a refusal.
    def client_closed_a_waiting_poll(e: dict) -> bool:
        return (
            e["status"] == "499"
            and e["method"] == "GET"
            and e["query"].get("transport") == "polling"
            and e["ustatus"] == "-"
        )

    refused = [
        e
        for e in entries
        if e["status"] not in ("200", "101") and not client_closed_a_waiting_poll(e)
    ]
    assert refused == []
    for entry in ours:
        assert entry["upstream"] == ports[entry["query"]["sid"].split(".", 1)[0]], entry
    # Every session was polled after its handshake (the requests cookie-less clients lost).
    polled = {e["query"]["sid"] for e in ours if e["query"].get("transport") == "polling"}
    assert polled == sids
    print(f"{len(ours)} requests with a sid, all on their worker; 0 refused")
