"""Each Engine.IO message is handled on a task of its own, which the connection's reader
waits for.

A connection's reader (the greenlet serving its WebSocket) lives as long as the connection.
On CPython 3.11 a greenlet keeps its Python frames in a data-stack chunk of its own (16 KiB,
mapped when the greenlet first runs and unmapped when it ends), and every page of it that a
call ever reached stays resident for the greenlet's life. The deepest calls a reader makes are
the event handlers (the token check, SQLAlchemy, Flask-SocketIO's request context), not the
reading: run there, they left every idle connection holding the pages they touched. Run on a
task that ends when the handler returns, those pages go back with the task.

What is kept: the reader waits for the task, so a connection's events are still handled one
after another, in the order received (`async_handlers=False` in app.py), and a client that
sends faster than its events are handled is still held back by TCP; an exception raised by
the handler is raised in the reader, as when it ran there.

Measured (`make bench-density CLIENTS=8000 DENSITY_SERVERS=chat`, docs/BENCHMARKS.md,
"Connection density"): 38.3 -> 34.3 KiB per idle connection.

A parked WebSocket (parking.py) is read by a greenlet that ends once what arrived is handled:
it marks itself (`handle_on_this_greenlet`) and its messages are handled on it, without a
second task per message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import engineio
import greenlet

T = TypeVar("T")

# The attribute a greenlet that ends after the messages it reads carries (parking.py).
_ENDS_AFTER_READING = "chat_ends_after_reading"


def handle_on_this_greenlet() -> None:
    """Mark the current greenlet as one that ends once the messages it reads are handled:
    run_on_own_task then runs handlers on it directly."""
    setattr(greenlet.getcurrent(), _ENDS_AFTER_READING, True)


def run_on_own_task(server: engineio.Server, handler: Callable[..., T], *args: Any) -> T:
    """Run `handler(*args)` on a new task of `server`'s async mode and wait for it to end.

    On a greenlet marked by `handle_on_this_greenlet`, `handler` runs on it directly.
    Returns what the handler returned; raises in the caller what it raised, whatever it was
    (a `gevent.Timeout` or `GreenletExit` too: they reach the reader as when the handler ran
    there). Nothing kills these tasks (the worker exits after its drain); one killed before
    it first ran would leave the caller waiting.
    """
    if getattr(greenlet.getcurrent(), _ENDS_AFTER_READING, False):
        return handler(*args)  # its pages go back when this greenlet ends, soon
    outcome: list[Any] = []
    # Waited for with an event rather than the task's join(): python-engineio's eventlet
    # task returns from join() at once when the green thread has not started yet.
    done = server.create_event()

    def run() -> None:
        try:
            outcome.append(handler(*args))
        except BaseException as exc:
            outcome.append(_Raised(exc))
        finally:
            done.set()

    server.start_background_task(run)
    done.wait()
    result = outcome[0]
    if isinstance(result, _Raised):
        raise result.exc
    return result


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
