"""A rolling restart: each worker of a 3-worker cluster gets SIGTERM in turn and is started again.

A worker drains (chat/transport/drain.py): it closes its listener, answers new events
`unavailable`, lets the handlers in flight finish and ack, closes its clients' transports so
they reconnect through nginx to another worker, and exits 0 within DRAIN_SECONDS. Real
processes throughout (deploy/cluster.py's Cluster, real python-socketio clients through
nginx); chat goes on all the time.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
import requests

from testkit.clients import RoomFollower, SteadyChat, assert_room_logs_complete, register
from testkit.processes import wait_for

pytestmark = pytest.mark.e2e

CLIENTS = 9
SENDERS = 3
MESSAGES_PER_SECOND = 9
DRAIN_SECONDS = 5
# A drain with nothing slow in flight takes well under a second; the bound is the setting.
STOP_BOUND_SECONDS = DRAIN_SECONDS + 2
BACK_BOUND_SECONDS = 20.0
# nginx takes a worker whose connection was refused out of rotation for fail_timeout (10 s in
# deploy/cluster.py) and only then tries it again: a rolling restart must not stop the next
# worker before nginx routes to the restarted one, or every worker may be marked down at once
# ("no live upstreams": 502 for everyone until fail_timeout runs out).
ROUTED_BOUND_SECONDS = 30.0


def wait_routed(cluster, node_id: str) -> float:
    """Until nginx sends requests to `node_id` again; returns how long that took."""
    started = time.monotonic()

    def routed() -> bool:
        # No affinity cookie: each request is hashed on a fresh key, so all workers are tried.
        return requests.get(cluster.url + "/healthz", timeout=5).json().get("node") == node_id

    wait_for(routed, ROUTED_BOUND_SECONDS, f"nginx to route to {node_id} again", interval=0.1)
    return time.monotonic() - started


def test_rolling_restart_drains_each_worker_and_loses_nothing(start_cluster):
    cluster = start_cluster(
        workers=3, env={"RATE_LIMIT_MESSAGES": "10000", "DRAIN_SECONDS": str(DRAIN_SECONDS)}
    )
    room = f"rolling-{uuid.uuid4().hex[:8]}"
    followers = []
    for i in range(CLIENTS):
        _, token = register(cluster.url)
        followers.append(RoomFollower(cluster.url, token, room, name=f"client-{i}"))
    chat = SteadyChat(followers[:SENDERS], MESSAGES_PER_SECOND / SENDERS).start()
    time.sleep(1.0)

    figures = []
    for worker in cluster.workers:
        on_it = [f for f in followers if f.nodes[-1] == worker.node_id]
        sigterm_at = time.monotonic()
        exit_code = worker.stop(timeout=STOP_BOUND_SECONDS + 5)
        stopped_after = time.monotonic() - sigterm_at
        assert exit_code == 0, f"{worker.node_id} exited {exit_code}, not drained"
        assert stopped_after < STOP_BOUND_SECONDS
        drained = re.findall(r"SIGTERM: drained (\d+) sockets", worker.log_text())
        assert drained, f"{worker.node_id} did not drain"
        back_after = max(
            (f.wait_reconnected(sigterm_at, BACK_BOUND_SECONDS) - sigterm_at for f in on_it),
            default=0.0,
        )
        assert all(f.nodes[-1] != worker.node_id for f in on_it), "moved to another worker"
        worker.start()
        worker.wait_healthy()
        routed_after = wait_routed(cluster, worker.node_id)
        figures.append(
            f"{worker.node_id}: {len(on_it)} clients, drained {drained[-1]} "
            f"sockets and exited 0 in {stopped_after:.2f} s, its clients back on "
            f"other workers after {back_after:.2f} s, nginx routed to it again "
            f"{routed_after:.1f} s after it was healthy"
        )

    chat.stop()
    last_seq = max(m["seq"] for f in followers for m in f.acked)
    for f in followers:
        f.wait_for_seq(last_seq, timeout=BACK_BOUND_SECONDS)
    assert chat.failures == []
    assert assert_room_logs_complete(followers) == last_seq == chat.sent()
    ack_ms = sorted(s * 1000 for s in chat.ack_seconds)
    print(
        "\nrolling restart, " + "; ".join(figures) + f"; {last_seq} messages, none lost; "
        f"ack p50 {ack_ms[len(ack_ms) // 2]:.0f} ms, max {ack_ms[-1]:.0f} ms"
    )
    for f in followers:
        f.close()
