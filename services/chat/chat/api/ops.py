"""Operator endpoints: /healthz and /metrics (outside /api, as probes expect)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from ..extensions import db
from ..metrics import registry

log = logging.getLogger(__name__)
ops = Blueprint("ops", __name__)


# app.extensions key: True once the database's schema was seen at the migrations' head.
SCHEMA_AT_HEAD = "chat.schema_at_head"


def migration_heads(directory: str) -> set[str]:
    """The head revision(s) of the migration scripts in `directory` (read from the files)."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory(directory).get_heads())


def schema_check() -> dict[str, Any]:
    """{"ok": True} when the database answers and its schema is at the migrations' head.

    Else {"ok": False, "error": ...}: the exception's type name when the database does not
    answer, "missing tables" when it was never migrated (no alembic_version), "schema not at
    head" (with "revision" and "head") when it is behind. An unmigrated database answered
    SELECT 1 while every write failed with 503. The positive result is kept per app: a
    schema does not fall behind under a running worker, so a healthy probe costs SELECT 1.
    """
    app = current_app
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:
        db.session.rollback()
        return {"ok": False, "error": type(exc).__name__}
    if app.extensions.get(SCHEMA_AT_HEAD):
        return {"ok": True}
    heads = app.extensions.get("chat.migration_heads")
    if heads is None:
        heads = app.extensions["chat.migration_heads"] = migration_heads(
            app.extensions["migrate"].directory
        )
    try:
        rows = db.session.execute(text("SELECT version_num FROM alembic_version")).all()
    except Exception:
        db.session.rollback()
        return {"ok": False, "error": "missing tables"}
    revisions = {row[0] for row in rows}
    if revisions != heads:
        return {
            "ok": False,
            "error": "schema not at head",
            "revision": ",".join(sorted(revisions)) or None,
            "head": ",".join(sorted(heads)),
        }
    app.extensions[SCHEMA_AT_HEAD] = True
    return {"ok": True}


@ops.get("/healthz")
def healthz() -> tuple[dict[str, Any], int]:
    """200 {"ok": true, "node", "checks": {name: {"ok": true}}}; 503 with the failing checks'
    "error" when any fails (database: see schema_check; the cluster's: cluster/liveness.py)."""
    checks: dict[str, dict] = {"database": schema_check()}
    liveness = current_app.extensions["chat.liveness"]
    checks.update(liveness.checks())
    healthy = all(c["ok"] for c in checks.values())
    if not healthy:
        log.warning("health check failing: %s", {k: v for k, v in checks.items() if not v["ok"]})
    body = {"ok": healthy, "node": current_app.config["NODE_ID"], "checks": checks}
    return body, 200 if healthy else 503


@ops.get("/metrics")
def metrics() -> tuple[bytes, int, dict[str, str]]:
    current_app.extensions["chat.liveness"].update_metrics()
    return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}
