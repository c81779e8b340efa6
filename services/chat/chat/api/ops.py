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


@ops.get("/healthz")
def healthz() -> tuple[dict[str, Any], int]:
    checks: dict[str, dict] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:
        db.session.rollback()
        checks["database"] = {"ok": False, "error": type(exc).__name__}
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
