"""Many members for a measurement's room, written straight to the database (one statement each).

Registering 1,000 users over REST takes the harness longer than the measurement; the tools
that only need members with tokens insert them here and issue their tokens themselves.
"""

from __future__ import annotations

import sqlalchemy as sa


def insert_members(database_url: str, room: str, count: int) -> list[tuple[int, str]]:
    """Create users `member0`..`member{count-1}` and make them members of the existing `room`.

    `database_url`: an SQLAlchemy URL of the worker's database. Returns (user id, username)
    of every `member%` user. Raises sqlalchemy's errors (e.g. IntegrityError when the users
    exist already).
    """
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO users (username, password_hash, created_at)"
                    " VALUES (:n, 'x', CURRENT_TIMESTAMP)"
                ),
                [{"n": f"member{i}"} for i in range(count)],
            )
            conn.execute(
                sa.text(
                    "INSERT INTO memberships (room_id, user_id, last_read_seq)"
                    " SELECT r.id, u.id, 0 FROM rooms r, users u"
                    " WHERE r.name = :room AND u.username LIKE 'member%'"
                ),
                {"room": room},
            )
            rows = conn.execute(
                sa.text("SELECT id, username FROM users WHERE username LIKE 'member%'")
            ).all()
    finally:
        engine.dispose()
    return [(row[0], row[1]) for row in rows]
