"""The one place that knows which green-thread library runs the worker.

Everything else uses socketio.start_background_task / socketio.sleep. This module patches the
standard library (and the PostgreSQL driver) before anything else is imported, and runs the few
CPU-heavy C calls (password hashing) on a native thread so they do not stall the hub.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from .config import SUPPORTED_MODES, async_mode

T = TypeVar("T")
_mode = "threading"


def patch(mode: str | None = None) -> str:
    """Monkey-patch for the chosen async mode; call before importing anything else."""
    global _mode
    mode = mode or async_mode()
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
    if mode in ("gevent", "eventlet"):
        from psycopg2 import extensions

        extensions.set_wait_callback(_wait_with_deadline)
    _mode = mode
    return mode


# No answer for this long is a hung server. PostgreSQL's own statement_timeout (the same
# setting) ends slow statements on a live server; this bound holds when the server cannot
# answer at all (frozen, or its host gone without a RST). Set from the config.
_database_deadline: float | None = None


def set_database_timeout(seconds: float | None) -> None:
    """Give up on a PostgreSQL call that has waited `seconds` without any answer."""
    global _database_deadline
    _database_deadline = seconds


@functools.cache
def _database_timeout_class() -> type[Exception]:
    """psycopg2.OperationalError's subclass for a call that got no answer in time.

    Made on first use: this module is imported before monkey-patching, psycopg2 need not be.
    """
    from psycopg2 import OperationalError

    return type("DatabaseTimeout", (OperationalError,), {})


def is_database_timeout(exc: BaseException) -> bool:
    """Whether `exc` (or the driver error SQLAlchemy wrapped in it) is our no-answer timeout.

    Unlike other failures, the statement may have reached the server and run once it woke.
    """
    return isinstance(getattr(exc, "orig", exc), _database_timeout_class())


def _wait_with_deadline(conn: Any) -> None:
    """psycogreen's wait callback with a timeout on each wait for the socket.

    psycogreen waits for the connection's socket with no timeout, so a frozen server (it
    accepts and ACKs at the TCP level but never answers) held each request for as long as it
    stayed frozen, keepalives notwithstanding (the kernel answers those).
    """
    from psycopg2 import OperationalError, extensions

    timeout = _database_deadline
    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return
        if state not in (extensions.POLL_READ, extensions.POLL_WRITE):
            raise OperationalError(f"bad result from poll: {state!r}")
        if not _wait_fd(conn.fileno(), state == extensions.POLL_READ, timeout):
            # An OperationalError, so SQLAlchemy wraps it as one (the client gets
            # `unavailable`); psycopg2 closes a connection whose wait callback raised, and
            # SQLAlchemy, seeing it closed, discards it from the pool.
            raise _database_timeout_class()(f"PostgreSQL did not answer within {timeout:.0f} s")


def _wait_fd(fd: int, read: bool, timeout: float | None) -> bool:
    """Wait until fd is ready on the green hub; False when `timeout` passed first."""
    if _mode == "eventlet":
        from eventlet.hubs import trampoline

        try:
            trampoline(fd, read=read, write=not read, timeout=timeout, timeout_exc=TimeoutError)
        except TimeoutError:
            return False
        return True
    from gevent.socket import wait_read, wait_write

    try:
        (wait_read if read else wait_write)(fd, timeout=timeout, timeout_exc=TimeoutError)
    except TimeoutError:
        return False
    return True


def run_native(fn: Callable[..., T], *args: object) -> T:
    """Run a GIL-releasing C call on a real OS thread, so other greenlets keep running."""
    if _mode == "gevent":
        import gevent

        return gevent.get_hub().threadpool.apply(fn, args)
    if _mode == "eventlet":
        from eventlet import tpool

        return tpool.execute(fn, *args)
    return fn(*args)
