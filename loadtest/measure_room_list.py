"""How long `GET /api/rooms` takes at 10,000 rooms and 1,000,000 messages, and in how many queries.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \
        .venv/bin/python loadtest/measure_room_list.py

Creates (and drops) its own database on that server; fills it with SQL `generate_series`
(10,000 rooms: 9,000 public, 500 private of 5 members, 500 DMs; 1,000,000 messages spread over
them; 2,000 users), then times the room list of a user who belongs to every room (the worst
case) and of one with 20 rooms, over the Flask test client, counting statements.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from sqlalchemy import event, text

from chat import create_app
from chat.domain.accounts import Principal, issue_token
from chat.extensions import db
from testkit.processes import PostgresDatabase

ROOMS, MESSAGES, USERS, REPEAT = 10_000, 1_000_000, 2_000, 20

FILL = [
    "INSERT INTO users (id, username, password_hash, created_at)"
    " SELECT g, 'user' || g, 'x', now() FROM generate_series(1, :users) g",
    # Rooms 2..ROOMS+1 (room 1 is `general`): public, then private, then DMs.
    "INSERT INTO rooms (id, name, private, kind, dm_key, last_seq, created_at, created_by)"
    " SELECT g, CASE WHEN g > :rooms - 499 THEN 'dm-' || g ELSE 'room' || g END,"
    " g > :rooms - 999,"
    " CASE WHEN g > :rooms - 499 THEN 'dm' WHEN g > :rooms - 999 THEN 'private' ELSE 'public' END,"
    " CASE WHEN g > :rooms - 499 THEN '1:' || g END, :messages / :rooms, now(), 1"
    " FROM generate_series(2, :rooms + 1) g",
    "SELECT setval('rooms_id_seq', :rooms + 2)",
    "INSERT INTO messages (room_id, seq, user_id, username, text, created_at)"
    " SELECT 2 + (g % :rooms), 1 + g / :rooms, 1 + g % :users, 'user' || (1 + g % :users),"
    " 'message ' || g, now() FROM generate_series(0, :messages - 1) g",
    # user1 belongs to every room, read half way; user2 to 20 rooms; private rooms have 5.
    "INSERT INTO memberships (room_id, user_id, last_read_seq)"
    " SELECT id, 1, last_seq / 2 FROM rooms WHERE id > 1",
    "INSERT INTO memberships (room_id, user_id, last_read_seq)"
    " SELECT id, 2, 0 FROM rooms WHERE id BETWEEN 2 AND 21 OR id > :rooms - 499",
    "INSERT INTO memberships (room_id, user_id, last_read_seq)"
    " SELECT r.id, 3 + (r.id * 7 + k) % (:users - 3), 0 FROM rooms r,"
    " generate_series(0, 2) k WHERE r.kind = 'private'",
    "ANALYZE",
]


def main() -> None:
    server = os.environ.get("DATABASE_URL", "")
    if not server.startswith("postgres"):
        sys.exit("DATABASE_URL must name a PostgreSQL server")
    database = PostgresDatabase(server)
    try:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": database.url,
                "SQLALCHEMY_ENGINE_OPTIONS": {},
                "ASYNC_MODE": "threading",
                "REDIS_URL": None,
                "SECRET_KEY": "measure",
            }
        )
        started = time.perf_counter()
        with app.app_context():
            params = {"users": USERS, "rooms": ROOMS, "messages": MESSAGES}
            for statement in FILL:
                db.session.execute(text(statement), params)
                db.session.commit()
            engine = db.engine
        print(f"filled in {time.perf_counter() - started:.1f} s", flush=True)
        client = app.test_client()
        statements: list[str] = []
        event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        for uid in (1, 2):
            token = issue_token(Principal(uid, f"user{uid}"), "measure")
            headers = {"Authorization": f"Bearer {token}"}
            timings = []
            for _ in range(REPEAT):
                statements.clear()
                t0 = time.perf_counter()
                r = client.get("/api/rooms", headers=headers)
                timings.append(time.perf_counter() - t0)
                assert r.status_code == 200
            rooms = r.get_json()["rooms"]
            print(
                f"user{uid}: {len(rooms)} rooms, {sum(x['unread'] for x in rooms)} unread,"
                f" {len(statements)} queries; median {statistics.median(timings) * 1000:.1f} ms,"
                f" max {max(timings) * 1000:.1f} ms over {REPEAT} requests",
                flush=True,
            )
        with app.app_context():
            plan = db.session.execute(
                text(
                    "EXPLAIN ANALYZE SELECT rooms.*, memberships.last_read_seq FROM rooms"
                    " JOIN memberships ON memberships.room_id = rooms.id"
                    " WHERE memberships.user_id = 2 ORDER BY lower(rooms.name)"
                )
            ).scalars()
            print("\n".join(plan))
            db.session.remove()
        engine.dispose()
    finally:
        database.drop()


if __name__ == "__main__":
    main()
