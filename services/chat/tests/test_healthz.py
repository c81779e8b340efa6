"""/healthz fails its database check while the schema is not at the migrations' head."""

from __future__ import annotations

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import text

from chat.api.ops import migration_heads
from chat.app import MIGRATIONS_DIR
from chat.extensions import db

HEAD = ",".join(sorted(migration_heads(MIGRATIONS_DIR)))


@pytest.fixture
def unmigrated_app(make_app) -> Flask:
    """The app on a fresh database, started with AUTO_MIGRATE=0 (nothing created)."""
    return make_app(AUTO_MIGRATE=False)


def test_healthz_fails_the_database_check_on_an_unmigrated_database(unmigrated_app):
    reply = unmigrated_app.test_client().get("/healthz")
    assert (reply.status_code, reply.get_json()["ok"]) == (503, False)
    assert reply.get_json()["checks"]["database"] == {"ok": False, "error": "missing tables"}


def test_healthz_fails_while_the_schema_is_behind_and_passes_at_head(unmigrated_app):
    client = unmigrated_app.test_client()
    with unmigrated_app.app_context():
        upgrade(directory=MIGRATIONS_DIR, revision="0001")
        revision = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        db.session.remove()
    reply = client.get("/healthz")
    assert reply.status_code == 503
    assert reply.get_json()["checks"]["database"] == {
        "ok": False,
        "error": "schema not at head",
        "revision": revision,
        "head": HEAD,
    }
    with unmigrated_app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
        db.session.remove()
    reply = client.get("/healthz")
    assert (reply.status_code, reply.get_json()["checks"]["database"]) == (200, {"ok": True})


def test_healthz_reads_the_schema_version_until_it_was_at_head_only(unmigrated_app):
    """The positive result is kept: a healthy probe costs SELECT 1, not a version read."""
    client = unmigrated_app.test_client()
    with unmigrated_app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
        db.session.remove()
    assert client.get("/healthz").status_code == 200
    with unmigrated_app.app_context():
        # Reads as "not at head" to whoever reads it: nobody should.
        db.session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        db.session.commit()
        db.session.remove()
    # Nothing reads the version again in this app (a worker's schema does not go back).
    assert client.get("/healthz").status_code == 200
