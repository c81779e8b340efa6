"""Redis goes away under two workers: chat keeps storing, and everyone catches up afterwards.

Real processes: a private redis-server (stopped and started, or frozen with SIGSTOP), two
real chat workers sharing it and one database, and real Socket.IO clients (RoomFollower)
that do what the contract asks of a client: catch up by seq on reconnect or on a seq jump.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from testkit.clients import RoomFollower, assert_room_logs_complete, register
from testkit.processes import wait_for

pytestmark = pytest.mark.e2e

# A send answered within this bound did not hang on Redis (the worst case by design is
# 1 s for the rate limiter's call plus 2 x 0.5 s for python-socketio's two publish tries).
SEND_BOUND_SECONDS = 3.0
# Liveness bounds, not speed claims: the figures printed are what the tests measure.
HEALTH_BOUND_SECONDS = 10.0
RECOVERY_BOUND_SECONDS = 20.0
# Long enough for the listeners' reconnect backoff to reach its cap (1, 2, 4 s).
OUTAGE_SECONDS = 6.0


def healthz(worker) -> tuple[int, dict]:
    r = requests.get(worker.url + "/healthz", timeout=5)
    return r.status_code, r.json()


@pytest.fixture
def two_workers(redis_server, start_worker):
    """Workers A and B on the private Redis, sharing one SQLite database."""
    env = {"REDIS_URL": redis_server.url, "RATE_LIMIT_MESSAGES": "1000"}
    a = start_worker(NODE_ID="worker-a", **env)
    b = start_worker(NODE_ID="worker-b", **env)
    return a, b


def follow_room(a, b) -> tuple[RoomFollower, RoomFollower]:
    room = f"outage-{uuid.uuid4().hex[:8]}"
    _, alice_token = register(a.url)
    _, bob_token = register(b.url)
    alice = RoomFollower(a.url, alice_token, room, name="alice@A")
    bob = RoomFollower(b.url, bob_token, room, name="bob@B")
    return alice, bob


def chat_while(alice: RoomFollower, bob: RoomFollower, count: int, tag: str) -> list[float]:
    """Each sends `count` messages, alternating; returns the ack latencies."""
    latencies = []
    for i in range(count):
        for who in (alice, bob):
            started = time.monotonic()
            who.send(f"{tag} {i} from {who.name}")
            latencies.append(time.monotonic() - started)
    return latencies


def recover(a, b, alice, bob, *, caught_up_seq: int, since: float) -> tuple[float, float]:
    """After Redis is back: both workers healthy, both members caught up, live chat again.

    Returns (seconds until healthy, seconds until every member had every message) from
    `since`. Nobody reconnects or sends to catch up: the workers' re-send of each room's
    newest message shows the clients the seq they missed, and they catch up by themselves.
    """
    wait_for(
        lambda: healthz(a)[0] == 200 and healthz(b)[0] == 200,
        RECOVERY_BOUND_SECONDS,
        "both workers healthy again",
    )
    healthy_after = time.monotonic() - since
    for f in (alice, bob):
        f.wait_for_seq(caught_up_seq, timeout=RECOVERY_BOUND_SECONDS)
    complete_after = time.monotonic() - since
    chat_while(alice, bob, 1, "after")  # live fan-out across workers works again
    for f in (alice, bob):
        f.wait_for_seq(caught_up_seq + 2)
    assert assert_room_logs_complete([alice, bob]) == caught_up_seq + 2
    return healthy_after, complete_after


def test_redis_restart_loses_no_acknowledged_message(redis_server, two_workers):
    a, b = two_workers
    alice, bob = follow_room(a, b)
    chat_while(alice, bob, 3, "before")
    for f in (alice, bob):
        f.wait_for_seq(6)

    down_at = time.monotonic()
    redis_server.stop()
    wait_for(
        lambda: healthz(a)[0] == 503 and healthz(b)[0] == 503,
        HEALTH_BOUND_SECONDS,
        "/healthz to report the outage",
    )
    reported_after = time.monotonic() - down_at
    status, body = healthz(a)
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"] is True

    during = chat_while(alice, bob, 5, "during")  # stored and acked while Redis is down
    assert max(during) < SEND_BOUND_SECONDS
    assert healthz(b)[0] == 503, "the outage is reported while it lasts"
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    assert healthz(a)[0] == 503, "the outage is reported while it lasts"

    redis_server.start_again()
    up_at = time.monotonic()
    healthy_after, complete_after = recover(a, b, alice, bob, caught_up_seq=16, since=up_at)
    assert a.alive() and b.alive()
    tracebacks = a.tracebacks() + b.tracebacks()
    print(
        f"\nredis stopped {up_at - down_at:.1f} s: /healthz 503 after {reported_after:.2f} s; "
        f"sends during outage acked in max {max(during) * 1000:.0f} ms "
        f"(median {sorted(during)[len(during) // 2] * 1000:.0f} ms); healthy "
        f"{healthy_after:.2f} s after redis is back; every member complete after "
        f"{complete_after:.2f} s; wire duplicates {alice.wire_duplicates + bob.wire_duplicates}; "
        f"tracebacks in worker logs {tracebacks}"
    )
    assert tracebacks == 0
    for f in (alice, bob):
        f.close()


def test_hung_redis_never_hangs_a_handler(redis_server, two_workers):
    a, b = two_workers
    alice, bob = follow_room(a, b)
    chat_while(alice, bob, 1, "before")

    redis_server.pause()  # SIGSTOP: connections accepted, nothing answered
    frozen_at = time.monotonic()
    try:
        wait_for(lambda: healthz(a)[0] == 503, HEALTH_BOUND_SECONDS, "/healthz to fail")
        reported_after = time.monotonic() - frozen_at
        during = chat_while(alice, bob, 3, "during")
        assert max(during) < SEND_BOUND_SECONDS
    finally:
        redis_server.resume()
    resumed_at = time.monotonic()
    healthy_after, complete_after = recover(a, b, alice, bob, caught_up_seq=8, since=resumed_at)
    print(
        f"\nredis frozen {resumed_at - frozen_at:.1f} s: sends acked in max "
        f"{max(during) * 1000:.0f} ms; /healthz 503 after {reported_after:.2f} s; healthy "
        f"{healthy_after:.2f} s after SIGCONT; complete after {complete_after:.2f} s"
    )
    assert a.tracebacks() + b.tracebacks() == 0
    for f in (alice, bob):
        f.close()
