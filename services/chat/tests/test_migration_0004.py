"""Migration 0004 (the session clock) on a database that 0003 filled: existing rows, downgrade."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from chat.app import MIGRATIONS_DIR
from chat.domain import accounts
from chat.domain.accounts import OpenSessions, Principal
from chat.extensions import db


def test_upgrade_stamps_existing_sessions_zero_and_a_first_check_still_sees_them(make_app):
    app = make_app(AUTO_MIGRATE=False)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR, revision="0003")
        run = db.session.execute
        for uid, name, valid_after in [(1, "alice", now_ms), (2, "bob", 0)]:
            run(
                sa.text(
                    "INSERT INTO users (id, username, password_hash, created_at,"
                    " tokens_valid_after) VALUES (:i, :n, 'x', :t, :v)"
                ),
                {"i": uid, "n": name, "t": datetime.now(UTC), "v": valid_after},
            )
        run(
            sa.text("INSERT INTO token_revocations (jti, user_id, expires_at) VALUES (:j, 2, :e)"),
            {"j": "r" * 32, "e": now_ms + 60_000},
        )
        db.session.commit()

        upgrade(directory=MIGRATIONS_DIR)

        assert run(sa.text("SELECT id, version FROM session_clock")).all() == [(1, 0)]
        users = run(sa.text("SELECT id, ended_version FROM users ORDER BY id")).all()
        assert [tuple(u) for u in users] == [(1, 0), (2, 0)]
        assert run(sa.text("SELECT jti, ended_version FROM token_revocations")).all() == [
            ("r" * 32, 0)
        ]
        db.session.rollback()
        # Sessions ended before the upgrade carry no version: a worker's first check looks
        # every token up in full, so they are still ended.
        sessions = OpenSessions()
        sessions["superseded"] = Principal(1, "alice", "a" * 32, now_ms - 1)
        sessions["revoked"] = Principal(2, "bob", "r" * 32, now_ms - 1)
        sessions["live"] = Principal(2, "bob", "b" * 32, now_ms - 1)
        assert sorted(accounts.ended_sessions(sessions, 3600)) == ["revoked", "superseded"]

        downgrade(directory=MIGRATIONS_DIR, revision="0003")
        inspector = sa.inspect(db.engine)
        assert "session_clock" not in inspector.get_table_names()
        for table in ("users", "token_revocations"):
            assert "ended_version" not in {c["name"] for c in inspector.get_columns(table)}
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
