"""The worker CPU a message costs in a room of 1,000 members none of whom has joined it.

    .venv/bin/python loadtest/measure_room_activity.py [--members 1000] [--messages 200]
        [--connected 0]

Starts a private redis-server and one real worker (gevent, SQLite in a temporary directory,
or DATABASE_URL's PostgreSQL server in a database it creates and drops), makes `--members`
users members of room `big` and none of `small`, posts `--messages` messages to each room
over REST at 20 per second (with `--connected N`, N of the members are connected over
Socket.IO, none joined, so each of them must get the `room` notices), and prints the
worker's CPU seconds per message for both (psutil: user + system time of the worker
process) and their difference: the cost of the members' `room` notices. Bounded: a few
hundred messages, a minute at most.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import requests

from chat.domain.accounts import Principal, issue_token
from chatload.members import insert_members
from testkit.clients import ChatClient, register
from testkit.processes import (
    HARNESS_SECRET_KEY,
    ChatWorker,
    PostgresDatabase,
    RedisServer,
    cpu_seconds,
)

RATE_PER_SECOND = 20
SECRET_KEY = HARNESS_SECRET_KEY  # what testkit's ChatWorker sets


def post_all(worker: ChatWorker, token: str, room: str, count: int) -> float:
    """CPU seconds the worker spent per message while `count` messages were posted."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    before = cpu_seconds(worker.pid)
    started = time.monotonic()
    for i in range(count):
        r = session.post(f"{worker.url}/api/rooms/{room}/messages", json={"text": f"m{i}"})
        r.raise_for_status()
        time.sleep(max(0.0, started + (i + 1) / RATE_PER_SECOND - time.monotonic()))
    time.sleep(2.5)  # the last coalesced flush (at most one per second) runs in here
    return (cpu_seconds(worker.pid) - before) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--connected", type=int, default=0)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        database = PostgresDatabase(server) if server.startswith("postgres") else None
        url = database.url if database else f"sqlite:///{workdir / 'chat.db'}"
        redis_server = RedisServer(workdir)
        worker = None
        try:
            worker = ChatWorker(
                workdir,
                env={
                    "DATABASE_URL": url,
                    "REDIS_URL": redis_server.url,
                    "RATE_LIMIT_MESSAGES": "100000",
                },
            )
            _, token = register(worker.url, "sender")
            for room in ("big", "small"):
                requests.post(
                    f"{worker.url}/api/rooms",
                    json={"name": room},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                ).raise_for_status()
            ids = insert_members(
                url.replace("postgresql://", "postgresql+psycopg2://", 1), "big", args.members
            )
            clients = [
                ChatClient(worker.url, issue_token(Principal(uid, name), SECRET_KEY))
                for uid, name in ids[: args.connected]
            ]
            small = post_all(worker, token, "small", args.messages)
            big = post_all(worker, token, "big", args.messages)
            notices = sum(len(c.received("room")) for c in clients)
            for c in clients:
                c.close()
            print(
                f"{'PostgreSQL' if database else 'SQLite'}, Redis queue, 1 worker:"
                f" room of 1 member {small * 1000:.2f} ms CPU per message;"
                f" room of {args.members + 1} members none joined, {args.connected} of them"
                f" connected ({notices} notices received) {big * 1000:.2f} ms;"
                f" the notices cost {(big - small) * 1000:.2f} ms per message"
                f" at {RATE_PER_SECOND} messages/s"
            )
        finally:
            if worker is not None:
                worker.stop()
            redis_server.stop()
            if database is not None:
                database.drop()


if __name__ == "__main__":
    main()
