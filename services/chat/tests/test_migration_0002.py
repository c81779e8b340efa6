"""Migration 0002 on a database that 0001 filled: what happens to existing rows."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from flask_migrate import upgrade

from chat.app import MIGRATIONS_DIR
from chat.extensions import db


def test_upgrade_renames_case_twins_and_reserved_names_and_keeps_reading_positions(
    make_app,
):
    app = make_app(AUTO_MIGRATE=False)
    now = datetime.now(UTC)
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR, revision="0001")
        run = db.session.execute
        for uid, name in [(1, "Alice"), (2, "alice"), (3, "bob")]:
            run(
                sa.text(
                    "INSERT INTO users (id, username, password_hash, created_at)"
                    " VALUES (:i, :n, 'x', :t)"
                ),
                {"i": uid, "n": name, "t": now},
            )
        for rid, name, private, last_seq in [
            (2, "General", False, 2),
            (3, "secret", True, 4),
            (4, "DM-1-3", False, 0),
        ]:
            run(
                sa.text(
                    "INSERT INTO rooms (id, name, private, last_seq, created_at)"
                    " VALUES (:i, :n, :p, :s, :t)"
                ),
                {"i": rid, "n": name, "p": private, "s": last_seq, "t": now},
            )
        run(sa.text("INSERT INTO memberships (room_id, user_id) VALUES (3, 3)"))
        for seq, uid, name in [(1, 2, "alice"), (2, 3, "bob")]:
            run(
                sa.text(
                    "INSERT INTO messages (room_id, seq, user_id, username, text, created_at)"
                    " VALUES (2, :s, :u, :n, 'hi', :t)"
                ),
                {"s": seq, "u": uid, "n": name, "t": now},
            )
        db.session.commit()

        upgrade(directory=MIGRATIONS_DIR)

        users = run(sa.text("SELECT id, username FROM users ORDER BY id")).all()
        assert [tuple(u) for u in users] == [(1, "Alice"), (2, "alice-2"), (3, "bob")]
        authors = run(sa.text("SELECT username FROM messages ORDER BY seq")).scalars().all()
        assert authors == ["alice-2", "bob"]  # a renamed user's messages carry the new name
        rooms = run(sa.text("SELECT id, name, kind FROM rooms ORDER BY id")).all()
        assert [tuple(r) for r in rooms] == [
            (1, "general", "public"),
            (2, "General-2", "public"),
            (3, "secret", "private"),
            (4, "room-DM-1-3", "public"),
        ]
        positions = run(
            sa.text("SELECT room_id, user_id, last_read_seq FROM memberships ORDER BY 1, 2")
        ).all()
        # Everybody joined the lobby and posters the public room they posted in, read up to
        # its end; the private room's member kept membership with nothing unread.
        assert [tuple(p) for p in positions] == [
            (1, 1, 0),
            (1, 2, 0),
            (1, 3, 0),
            (2, 2, 2),
            (2, 3, 2),
            (3, 3, 4),
        ]
        db.session.rollback()
        for statement in [
            "INSERT INTO users (username, password_hash, created_at) VALUES ('BOB', 'x', :t)",
            "INSERT INTO rooms (name, private, last_seq, created_at, kind)"
            " VALUES ('SECRET', false, 0, :t, 'public')",
        ]:
            try:
                run(sa.text(statement), {"t": now})
                db.session.commit()
                raise AssertionError(f"case twin accepted: {statement}")
            except sa.exc.IntegrityError:
                db.session.rollback()
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
