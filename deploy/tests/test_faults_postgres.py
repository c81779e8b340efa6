"""PostgreSQL goes away: sends are refused with `unavailable`, never falsely acked; the
worker serves again by itself once the database is back.

Real processes: a private PostgreSQL server (initdb + pg_ctl in a temporary directory, on
a free port; never the machine's shared one), a real chat worker on it, real clients.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from testkit.clients import ChatClient, RoomFollower, register
from testkit.processes import PostgresServer, wait_for

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
