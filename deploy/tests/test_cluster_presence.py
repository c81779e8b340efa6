"""Presence is cluster-wide and outlives no worker: a killed worker's users expire in bound."""

from __future__ import annotations

import time
import uuid

from testkit.clients import ChatClient, register

# Small, so the test is quick; production keeps the default (15 s).
TTL = 3
# The stated bound after a worker dies: its entries were refreshed at most TTL/3 before the
# kill and expire TTL after that refresh; the next sweep (every TTL/3, by any worker) removes
# them, and the change is announced within one presence flush (1 s).
EXPIRY_BOUND = TTL + TTL / 3 + 1.0
# Slack for a loaded two-core machine: processes scheduled late, the event's trip through Redis.
SLACK = 2.0


def test_a_user_on_a_killed_worker_disappears_from_presence_everywhere_within_the_bound(
    start_cluster,
):
    cluster = start_cluster(env={"PRESENCE_TTL_SECONDS": str(TTL)})
    worker_1, worker_2, _ = cluster.workers
    room = f"presence-{uuid.uuid4().hex[:8]}"
    alice, alice_token = register(worker_1.url)
    bob, bob_token = register(worker_2.url)
    on_1 = ChatClient(worker_1.url, alice_token)
    on_2 = ChatClient(worker_2.url, bob_token)
    try:
        assert on_1.join(room)["ok"] is True
        assert on_2.join(room)["ok"] is True
        # Seen from worker 2: alice, who is connected only to worker 1, is online.
        both = sorted([alice, bob])
        on_2.wait_for("presence", lambda p: p["room"] == room and p["users"] == both)

        worker_1.kill()  # SIGKILL: it cannot remove its entries; only their expiry can
        killed_at = time.monotonic()

        on_2.wait_for(
            "presence",
            lambda p: p["room"] == room and p["users"] == [bob],
            timeout=EXPIRY_BOUND + SLACK,
        )
        gone_after = time.monotonic() - killed_at
        assert gone_after <= EXPIRY_BOUND + SLACK
        # And she stays gone: no later announcement brings the ghost back.
        time.sleep(TTL / 3 + 1)
        assert on_2.received("presence")[-1] == {"room": room, "users": [bob]}
    finally:
        on_2.close()
