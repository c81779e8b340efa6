"""The chat worker: `create_app()` builds a Flask app with its REST API and Socket.IO namespace.

This module imports nothing heavy on purpose: `python -m chat` imports the package before
`__main__` runs, and the async mode must monkey-patch the standard library (green.py) before
Flask, ssl, redis or psycopg2 are imported. The factory itself lives in `app.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build a worker app from the environment, with `overrides` applied on top (tests)."""
    from .app import create_app as build

    return build(overrides)
