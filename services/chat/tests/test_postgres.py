"""PostgreSQL under concurrency: gapless seq across workers, and a green-friendly driver."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import requests

from testkit.clients import ChatClient, register

pytestmark = pytest.mark.e2e


def libpq_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg2://", "postgresql://")


def test_concurrent_senders_on_two_workers_get_gapless_unique_seqs(start_worker, postgres_url):
    env = {"DATABASE_URL": postgres_url, "RATE_LIMIT_MESSAGES": "10000"}
    workers = [start_worker(**env), start_worker(**env, AUTO_MIGRATE="0")]
    senders, per_sender = 8, 25

    def send_all(i: int) -> list[int]:
        base = workers[i % 2].url
        _, token = register(base)
        headers = {"Authorization": f"Bearer {token}"}
        seqs = []
        with requests.Session() as http:
            for n in range(per_sender):
                r = http.post(
                    f"{base}/api/rooms/general/messages",
                    json={"text": f"{i}-{n}", "client_id": f"{i}-{n}"},
                    headers=headers,
                    timeout=30,
                )
                assert r.status_code == 201, r.text
                seqs.append(r.json()["seq"])
        return seqs

    with ThreadPoolExecutor(senders) as pool:
        acked = [s for seqs in pool.map(send_all, range(senders)) for s in seqs]

    total = senders * per_sender
    assert sorted(acked) == list(range(1, total + 1))
    _, token = register(workers[0].url)
    stored, after = [], 0
    while True:
        page = requests.get(
            f"{workers[0].url}/api/rooms/general/messages",
            params={"after": after, "limit": 100},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        stored += page["messages"]
        if not page["more"]:
            break
        after = page["messages"][-1]["seq"]
    assert [m["seq"] for m in stored] == list(range(1, total + 1))
    assert len({m["text"] for m in stored}) == total


@pytest.mark.parametrize("async_mode", ["gevent", "eventlet"])
def test_a_request_waiting_on_postgresql_does_not_stall_other_clients(
    start_worker, postgres_url, async_mode
):
    """While one request waits 2 s inside PostgreSQL, the worker keeps delivering.

    The slow request posts into a room whose row the test has locked in a transaction that
    then runs SELECT pg_sleep(2): the worker's query waits on PostgreSQL for those 2 s. With a
    driver that blocked the hub, every other client of the worker would wait as long.
    """
    worker = start_worker(DATABASE_URL=postgres_url, ASYNC_MODE=async_mode)
    base = worker.url
    _, alice_token = register(base, "alice")
    _, bob_token = register(base, "bob")
    headers = {"Authorization": f"Bearer {alice_token}"}
    requests.post(f"{base}/api/rooms", json={"name": "slow"}, headers=headers, timeout=10)
    alice, bob = ChatClient(base, alice_token), ChatClient(base, bob_token)
    alice.join("general")
    bob.join("general")

    lock = psycopg2.connect(libpq_dsn(postgres_url))
    cur = lock.cursor()
    cur.execute("SELECT id FROM rooms WHERE name = 'slow' FOR UPDATE")
    slow_seconds: list[float] = []

    def slow_post() -> None:
        started = time.monotonic()
        r = requests.post(
            f"{base}/api/rooms/slow/messages", json={"text": "slow"}, headers=headers, timeout=30
        )
        slow_seconds.append(time.monotonic() - started)
        assert r.status_code == 201

    def hold_lock_through_pg_sleep() -> None:
        cur.execute("SELECT pg_sleep(2)")
        lock.commit()

    poster = threading.Thread(target=slow_post)
    poster.start()
    time.sleep(0.3)  # the POST is now waiting inside PostgreSQL for the row lock
    holder = threading.Thread(target=hold_lock_through_pg_sleep)
    holder.start()
    time.sleep(0.2)

    sent = time.monotonic()
    ack = alice.send("general", "still flowing")
    bob.wait_for("message", lambda m: m["seq"] == ack["message"]["seq"], timeout=5)
    delivered_after = time.monotonic() - sent

    holder.join()
    poster.join()
    lock.close()
    alice.close()
    bob.close()
    print(
        f"{async_mode}: delivery during the DB wait {delivered_after * 1000:.0f} ms; "
        f"slow request took {slow_seconds[0]:.2f} s"
    )
    assert slow_seconds[0] >= 1.5  # the slow request really was held up in PostgreSQL ...
    assert delivered_after < 1.0  # ... while the other client's message went through at once
