"""A chat worker that reports what its connections are made of (investigation only).

    DENSITY_PROBE_OUT=/tmp/probe DENSITY_TRACEMALLOC=1 python -m chatload.density_probe

Runs exactly what `python -m chat` runs, plus: on SIGUSR2 it writes
`<DENSITY_PROBE_OUT>-<n>.json` (live greenlets by what they run, gevent's loop counters,
objects by type, the size of one Engine.IO socket's environ) and, when DENSITY_TRACEMALLOC
is set (frames to keep, e.g. 1 or 8), `<DENSITY_PROBE_OUT>-<n>.tracemalloc`, for
`tracemalloc.Snapshot.load(...).compare_to(...)`. Used for the "Connection density" section of
docs/BENCHMARKS.md; not part of the service.
"""

# ruff: noqa: I001  (chat.__main__ monkey-patches the standard library: it comes first)
from __future__ import annotations

import chat.__main__ as entry

import collections
import gc
import json
import os
import signal
import sys
import time
import tracemalloc

import gevent
import greenlet

FRAMES = int(os.environ.get("DENSITY_TRACEMALLOC") or 0)
OUT = os.environ.get("DENSITY_PROBE_OUT", "/tmp/density-probe")
_dumps = 0
# Collections by generation and the seconds they took, since start (gc.callbacks).
_gc = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0]}
_gc_started = [0.0]


def _on_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        generation = info["generation"]
        _gc["collections"][generation] += 1
        _gc["seconds"][generation] += time.perf_counter() - _gc_started[0]


def _what(g: greenlet.greenlet) -> str:
    run = getattr(g, "_run", None) or getattr(g, "run", None)
    name = getattr(run, "__qualname__", None) or type(run).__name__
    if name == "Thread._run":  # python-engineio's gevent Thread: the target is in args
        name = getattr(getattr(g, "args", (None,))[0], "__qualname__", name)
    return f"{type(g).__name__}:{name}"


def _deep_size(obj: object, seen: set[int] | None = None) -> int:
    """Bytes of an object and what it holds (dicts, lists, tuples, str, bytes), not classes."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, type):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set):
        size += sum(_deep_size(v, seen) for v in obj)
    return size


def dump() -> None:
    global _dumps
    _dumps += 1
    gc.collect()  # counted in "gc" too: compare dumps taken the same way
    objects = gc.get_objects()
    greenlets = collections.Counter(_what(o) for o in objects if isinstance(o, greenlet.greenlet))
    types = collections.Counter(type(o).__qualname__ for o in objects)
    from chat.extensions import socketio

    eio = socketio.server.eio
    environ_bytes = 0
    for sid in list(eio.sockets)[:1]:
        environ = socketio.server.environ.get(sid)
        environ_bytes = _deep_size(environ) if environ is not None else 0
    loop = gevent.get_hub().loop
    report = {
        "sockets": len(eio.sockets),
        "greenlets": dict(greenlets.most_common(20)),
        "greenlets_total": sum(greenlets.values()),
        "loop": {
            "activecnt": getattr(loop, "activecnt", None),
            "pendingcnt": getattr(loop, "pendingcnt", None),
            "iteration": getattr(loop, "iteration", None),
            "backend": getattr(loop, "backend", None),
        },
        "objects_total": len(objects),
        "objects": dict(types.most_common(60)),
        "one_environ_deep_bytes": environ_bytes,
        "gc": {"collections": list(_gc["collections"]), "seconds": list(_gc["seconds"])},
        "gc_counts_thresholds": [gc.get_count(), gc.get_threshold()],
        "cpu_seconds": sum(os.times()[:2]),
    }
    del objects
    path = f"{OUT}-{_dumps}"
    with open(path + ".json", "w") as f:
        json.dump(report, f, indent=1)
    if FRAMES:
        tracemalloc.take_snapshot().dump(path + ".tracemalloc")
    print(f"density probe: wrote {path}.json", flush=True)


if __name__ == "__main__":
    if FRAMES:
        tracemalloc.start(FRAMES)
    gc.callbacks.append(_on_gc)
    gevent.signal_handler(signal.SIGUSR2, lambda: gevent.spawn(dump))
    entry.main()
