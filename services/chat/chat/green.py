"""The one place that knows which green-thread library runs the worker.

Everything else uses socketio.start_background_task / socketio.sleep. This module patches the
standard library (and the PostgreSQL driver) before anything else is imported, and runs the few
CPU-heavy C calls (password hashing) on a native thread so they do not stall the hub.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

SUPPORTED_MODES = ("gevent", "eventlet", "threading")
_mode = "threading"


def patch(mode: str | None = None) -> str:
    """Monkey-patch for the chosen async mode; call before importing anything else."""
    global _mode
    mode = mode or os.environ.get("ASYNC_MODE", "gevent")
    if mode not in SUPPORTED_MODES:
        raise SystemExit(f"ASYNC_MODE must be one of {', '.join(SUPPORTED_MODES)}, not {mode!r}")
    if mode == "gevent":
        import gevent

        # gevent records, for each greenlet it creates, its spawner and the 10 innermost
        # frames of the spawning stack (for its debugging tools; nothing here reads them).
        # Engine.IO creates a greenlet per socket every ping interval: at 8,000 idle sockets
        # those records were most of the objects that outlive a young collection, and so of
        # the garbage collector's work (docs/BENCHMARKS.md, "Connection density").
        gevent.config.track_greenlet_tree = False
        from gevent import monkey

        monkey.patch_all()
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
    elif mode == "eventlet":
        import eventlet

        eventlet.monkey_patch()
        from psycogreen.eventlet import patch_psycopg

        patch_psycopg()
    _mode = mode
    return mode


def run_native(fn: Callable[..., T], *args: object) -> T:
    """Run a GIL-releasing C call on a real OS thread, so other greenlets keep running."""
    if _mode == "gevent":
        import gevent

        return gevent.get_hub().threadpool.apply(fn, args)
    if _mode == "eventlet":
        from eventlet import tpool

        return tpool.execute(fn, *args)
    return fn(*args)
