"""REST transport: the /api blueprint, plus /healthz and /metrics."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from . import accounts, rooms  # noqa: E402,F401  (register the endpoints on bp)
