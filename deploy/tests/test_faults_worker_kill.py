"""A worker is killed (SIGKILL) in the middle of a conversation on a 3-worker cluster.

Real processes: testkit.cluster's Cluster (private redis-server, three chat workers, nginx
in front); real python-socketio clients connected through nginx, doing what the contract
asks of a client (RoomFollower: reconnect, catch up by seq, retry sends with the same
client_id). Nothing acknowledged may be lost; every log ends gap-free and duplicate-free.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from testkit.clients import RoomFollower, SteadyChat, assert_room_logs_complete, register

pytestmark = pytest.mark.e2e

CLIENTS = 12
SENDERS = 4
MESSAGES_PER_SECOND = 12  # all senders together
CHAT_SECONDS_BEFORE_KILL = 2.0
CHAT_SECONDS_AFTER_KILL = 5.0
# Liveness bounds: reconnect backoff is at most 2 s per try in RoomFollower, and nginx moves
# a refused connection to the next worker of the ring at once.
BACK_BOUND_SECONDS = 20.0
COMPLETE_BOUND_SECONDS = 30.0


def start_followers(url: str, room: str, count: int) -> list[RoomFollower]:
    followers = []
    for i in range(count):
        _, token = register(url)
        followers.append(RoomFollower(url, token, room, name=f"client-{i}"))
    return followers


def test_killed_worker_loses_no_acknowledged_message(start_cluster):
    cluster = start_cluster(workers=3, env={"RATE_LIMIT_MESSAGES": "10000"})
    room = f"kill-{uuid.uuid4().hex[:8]}"
    followers = start_followers(cluster.url, room, CLIENTS)
    placement = Counter(f.nodes[-1] for f in followers)
    assert len(placement) >= 2, f"nginx spread the clients: {placement}"

    senders = followers[:SENDERS]
    chat = SteadyChat(senders, MESSAGES_PER_SECOND / SENDERS).start()
    time.sleep(CHAT_SECONDS_BEFORE_KILL)

    victim_node = placement.most_common(1)[0][0]
    victims = [f for f in followers if f.nodes[-1] == victim_node]
    cluster.worker_by_node(victim_node).kill()
    killed_at = time.monotonic()

    time.sleep(CHAT_SECONDS_AFTER_KILL)
    chat.stop()
    stopped_at = time.monotonic()
    back_after = max(f.wait_reconnected(killed_at, BACK_BOUND_SECONDS) - killed_at for f in victims)
    last_seq = max(m["seq"] for f in senders for m in f.acked)
    for f in followers:
        f.wait_for_seq(last_seq, timeout=COMPLETE_BOUND_SECONDS)
    complete_after = time.monotonic() - stopped_at

    assert chat.failures == []
    assert all(f.nodes[-1] != victim_node for f in victims), "victims moved to survivors"
    assert assert_room_logs_complete(followers) == last_seq == chat.sent()
    ack_ms = sorted(s * 1000 for s in chat.ack_seconds)
    survivors = [w for w in cluster.workers if w.node_id != victim_node]
    assert all(w.alive() for w in survivors)
    # A peer's death is no error of theirs: the survivors logged no traceback.
    assert [w.log_text().count("Traceback (most recent") for w in survivors] == [0] * len(survivors)
    print(
        f"\nkill -9 {victim_node} ({len(victims)} of {CLIENTS} clients on it, placement "
        f"{dict(placement)}): last client back after {back_after:.2f} s; all {CLIENTS} logs "
        f"complete ({last_seq} messages) {complete_after:.2f} s after the last ack; ack p50 "
        f"{ack_ms[len(ack_ms) // 2]:.0f} ms, max {ack_ms[-1]:.0f} ms; wire duplicates "
        f"{sum(f.wire_duplicates for f in followers)}; survivors' tracebacks "
        f"{sum(w.log_text().count('Traceback (most recent') for w in survivors)}"
    )
    for f in followers:
        f.close()
