"""Presence is cluster-wide and outlives no worker: a killed worker's users expire in bound."""

from __future__ import annotations

import time
import uuid

from testkit.clients import ChatClient, register
from testkit.processes import wait_for

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


# After Redis comes back empty, each worker notices within a tick or two (1 s each) that the
# epoch it wrote is gone, writes its entries back, and announces nothing for 3 s while the
# others do the same (cluster/presence.py): about 3-4 s by design. A liveness bound for a busy
# two-core machine, not a speed claim.
CONVERGENCE_BOUND = 10.0


def presence_lists(client: ChatClient, room: str) -> list[list[str]]:
    return [p["users"] for p in client.received("presence") if p["room"] == room]


def wait_last_list(client: ChatClient, room: str, users: list[str], timeout: float) -> None:
    """Until the last `presence` list `client` got for `room` is `users`."""

    def last_is_users() -> bool:
        lists = presence_lists(client, room)
        return bool(lists) and lists[-1] == users

    wait_for(last_is_users, timeout, f"presence {users} at {client.base_url}")


def test_presence_converges_after_redis_restarts_empty_and_a_change_arrives_once(
    start_cluster,
):
    cluster = start_cluster()
    worker_1, worker_2, worker_3 = cluster.workers
    room = f"restart-{uuid.uuid4().hex[:8]}"
    (a, a_token), (b, b_token), (o, o_token), (c, c_token), (d, d_token) = (
        register(worker_1.url) for _ in range(5)
    )
    clients = {
        a: ChatClient(worker_1.url, a_token),
        b: ChatClient(worker_2.url, b_token),
        o: ChatClient(worker_3.url, o_token),
    }
    try:
        for client in clients.values():
            assert client.join(room)["ok"] is True
        for client in clients.values():
            wait_last_list(client, room, sorted([a, b, o]), timeout=10)

        seen_before_restart = {name: len(presence_lists(cl, room)) for name, cl in clients.items()}
        cluster.redis.restart()  # stopped by PID, started empty on the same port
        restarted = time.monotonic()
        clients[c] = ChatClient(worker_1.url, c_token)
        assert clients[c].join(room)["ok"] is True

        everyone = sorted([a, b, o, c])
        for client in clients.values():
            wait_last_list(client, room, everyone, timeout=CONVERGENCE_BOUND)
        converged_after = time.monotonic() - restarted
        print(f"every client had the true list {converged_after:.1f} s after the restart")
        counts = [
            len(presence_lists(client, room)) - seen_before_restart.get(name, 0)
            for name, client in clients.items()
        ]
        print(f"presence lists each client got after the restart: {counts}")
        assert converged_after <= CONVERGENCE_BOUND

        # One change (o leaves) reaches each remaining client once. The next change (d
        # joins, on another worker) is the marker: its list arrives after anything
        # announced before it, so a second copy of the first would be in between.
        stayers = [a, b, c]
        seen_before = {name: len(presence_lists(clients[name], room)) for name in stayers}
        assert clients[o].call("leave", {"room": room}) == {"ok": True}
        for name in stayers:
            wait_last_list(clients[name], room, sorted(stayers), timeout=10)
        clients[d] = ChatClient(worker_2.url, d_token)
        assert clients[d].join(room)["ok"] is True
        for name in stayers:
            wait_last_list(clients[name], room, sorted([*stayers, d]), timeout=10)
        for name in stayers:
            after = presence_lists(clients[name], room)[seen_before[name] :]
            assert after == [sorted(stayers), sorted([*stayers, d])], name
    finally:
        for client in clients.values():
            client.close()
