"""PostgreSQL goes away or hangs: sends are refused with `unavailable`, never falsely acked,
and within seconds (a frozen server too); the worker serves again by itself once the
database is back.

Real processes: a private PostgreSQL server (initdb + pg_ctl in a temporary directory, on
a free port; never the machine's shared one), a real chat worker on it, real clients.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from testkit.clients import ChatClient, RoomFollower, register
from testkit.processes import PostgresServer, wait_for
from testkit.rawsocket import RawWebSocket

pytestmark = pytest.mark.e2e

# A refusal within this bound means the handler failed fast instead of hanging on the pool.
REFUSAL_BOUND_SECONDS = 5.0
RECOVERY_BOUND_SECONDS = 30.0
# Long enough that the pool's connections are all dead and every request meets the outage.
OUTAGE_SECONDS = 3.0


@pytest.fixture
def private_postgres():
    server = PostgresServer()
    try:
        yield server
    finally:
        server.thaw()  # a frozen server cannot be stopped
        server.remove()


def test_database_outage_refuses_sends_and_recovers(private_postgres, start_worker):
    worker = start_worker(DATABASE_URL=private_postgres.url)
    room = f"pg-{uuid.uuid4().hex[:8]}"
    _, token = register(worker.url)
    _, other_token = register(worker.url)
    sender = ChatClient(worker.url, token)
    assert sender.join(room)["ok"]
    watcher = RoomFollower(worker.url, other_token, room, name="watcher")
    for i in range(3):
        assert sender.send(room, f"before {i}")["ok"]
    watcher.wait_for_seq(3)

    private_postgres.stop(mode="fast")
    down_at = time.monotonic()
    refused, refusal_seconds = [], []
    for i in range(5):
        started = time.monotonic()
        ack = sender.send(room, f"during {i}", client_id=f"during-{i}-{room}")
        refusal_seconds.append(time.monotonic() - started)
        refused.append(ack)
    assert all(
        ack == {"ok": False, "error": {"code": "unavailable", "message": ack["error"]["message"]}}
        for ack in refused
    ), refused
    assert max(refusal_seconds) < REFUSAL_BOUND_SECONDS
    join = sender.join(room, since=0)
    assert join["ok"] is False and join["error"]["code"] == "unavailable", join
    r = requests.post(
        f"{worker.url}/api/rooms/{room}/messages",
        json={"text": "rest during"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.text
    health = requests.get(worker.url + "/healthz", timeout=10)
    assert health.status_code == 503 and health.json()["checks"]["database"]["ok"] is False
    # A connect needs the database (is the token's session ended?): refused `unavailable`.
    raw = RawWebSocket(worker.url)
    try:
        answer = raw.connect({"token": token})
    finally:
        raw.close()
    assert answer.startswith("44"), answer
    refusal = json.loads(answer[2:])
    assert refusal["message"] == "unavailable" and refusal["data"]["code"] == "unavailable"

    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    private_postgres.start()
    up_at = time.monotonic()

    def sends_again() -> bool:
        return sender.send(room, "after", client_id=f"after-{room}")["ok"]

    wait_for(sends_again, RECOVERY_BOUND_SECONDS, "sends to succeed again", interval=0.2)
    recovered_after = time.monotonic() - up_at
    assert requests.get(worker.url + "/healthz", timeout=10).status_code == 200

    # Nothing refused was stored: the room holds the 3 messages before and the 1 after.
    watcher.wait_for_seq(4)
    history = sender.join(room, since=0)["messages"]
    assert [m["text"] for m in history] == ["before 0", "before 1", "before 2", "after"]
    assert watcher.seqs() == [1, 2, 3, 4]
    assert worker.alive()
    print(
        f"\npostgres down {up_at - down_at:.1f} s: sends refused 'unavailable' in max "
        f"{max(refusal_seconds) * 1000:.0f} ms; first send acked {recovered_after:.2f} s "
        f"after postgres was back; worker log tracebacks {worker.tracebacks()}"
    )
    sender.close()
    watcher.close()


# The worker's DATABASE_TIMEOUT_SECONDS in the freeze test (the default, stated).
DATABASE_TIMEOUT = 3
# /healthz must turn 503 within this long of the database hanging (the bound).
HEALTH_BOUND_SECONDS = 5.0
# Any call is answered within this long: its own wait for a pooled connection, then at most
# the timeout waiting for the database; with slack for a busy 2-core machine.
HUNG_CALL_BOUND_SECONDS = 2 * DATABASE_TIMEOUT + 4.0


@pytest.mark.parametrize("async_mode", ["gevent", "eventlet"])
def test_a_frozen_database_is_unavailable_within_seconds(
    private_postgres, start_worker, async_mode
):
    """SIGSTOP on every PostgreSQL process: the server accepts TCP but never answers."""
    worker = start_worker(
        DATABASE_URL=private_postgres.url,
        ASYNC_MODE=async_mode,
        DATABASE_TIMEOUT_SECONDS=str(DATABASE_TIMEOUT),
    )
    room = f"pg-{uuid.uuid4().hex[:8]}"
    _, token = register(worker.url)
    headers = {"Authorization": f"Bearer {token}"}
    sender = ChatClient(worker.url, token)
    assert sender.join(room)["ok"]
    assert sender.send(room, "before")["ok"]

    def timed(call):
        started = time.monotonic()
        result = call()
        return time.monotonic() - started, result

    def health():
        return requests.get(worker.url + "/healthz", timeout=60)

    def room_list():
        return requests.get(worker.url + "/api/rooms", headers=headers, timeout=60)

    private_postgres.freeze()
    try:
        with ThreadPoolExecutor(44) as pool:
            probe = pool.submit(timed, health)
            # More calls at once than the pool has connections (10 + 20 overflow).
            lists = [pool.submit(timed, room_list) for _ in range(40)]
            send = pool.submit(
                timed, lambda: sender.send(room, "during", client_id=f"during-{room}")
            )
            health_seconds, health_response = probe.result()
            list_results = [f.result() for f in lists]
            send_seconds, ack = send.result()
    finally:
        private_postgres.thaw()
    thawed_at = time.monotonic()

    assert health_response.status_code == 503
    assert health_response.json()["checks"]["database"]["ok"] is False
    assert health_seconds < HEALTH_BOUND_SECONDS, health_seconds
    assert ack == {
        "ok": False,
        "error": {"code": "unavailable", "message": ack["error"]["message"]},
    }
    assert send_seconds < HUNG_CALL_BOUND_SECONDS, send_seconds
    statuses = [r.status_code for _, r in list_results]
    assert statuses == [503] * len(statuses), statuses
    assert {r.json()["error"]["code"] for _, r in list_results} == {"unavailable"}
    slowest_list = max(seconds for seconds, _ in list_results)
    assert slowest_list < HUNG_CALL_BOUND_SECONDS, slowest_list

    # The refused send may have been stored after all: it was on the wire when the server
    # froze, and the server ran it when it woke. The client retries it with the same
    # client_id, as the contract says, and the room holds it exactly once either way.
    assert "retry with the same client_id" in ack["error"]["message"]

    def serves_again() -> bool:
        return sender.send(room, "during", client_id=f"during-{room}")["ok"]

    wait_for(serves_again, RECOVERY_BOUND_SECONDS, "sends to succeed again", interval=0.2)
    recovered_after = time.monotonic() - thawed_at
    assert sender.send(room, "after")["ok"]
    assert requests.get(worker.url + "/healthz", timeout=10).status_code == 200
    history = sender.join(room, since=0)["messages"]
    assert [m["text"] for m in history] == ["before", "during", "after"]
    assert worker.tracebacks() == 0
    print(
        f"\n{async_mode}: postgres frozen: /healthz 503 in {health_seconds:.2f} s, send "
        f"refused 'unavailable' in {send_seconds:.2f} s, 40 room lists all 503 in max "
        f"{slowest_list:.2f} s; serving again {recovered_after:.2f} s after SIGCONT"
    )
    sender.close()
