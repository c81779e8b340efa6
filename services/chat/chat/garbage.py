"""The cyclic garbage collector's share of a worker's latency: measured, and made smaller.

A full (generation 2) collection walks every object the collector tracks, and nothing else
runs on the hub meanwhile: every delivery due on the worker waits. Most of those objects
are the worker's own start-up (modules, functions, the app, SQLAlchemy's metadata: about
127,000 in a worker), which live as long as the process and are never garbage. Frozen
(`gc.freeze`, the standard library's way to exclude them), they are no longer walked.

Measured at 1,000 members x 20 msg/s on three workers (each worker ran one full collection
in a 30 s send window): 80-122 ms with 141-168k tracked objects; 15-53 ms with 25-43k once
the start-up objects were frozen (docs/BENCHMARKS.md, "Garbage collection pauses").
`chat_gc_pause_seconds{generation}` shows every worker's pauses in production.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from . import metrics

_pause_started = 0.0
_by_generation = {g: metrics.gc_pause_seconds.labels(str(g)) for g in range(3)}


def _observe(phase: str, info: dict[str, Any]) -> None:
    # Collections do not nest, and run with the GIL held: one start time serves every thread.
    global _pause_started
    if phase == "start":
        _pause_started = time.perf_counter()
    else:
        _by_generation[info["generation"]].observe(time.perf_counter() - _pause_started)


def watch_pauses() -> None:
    """Observe each collection's duration (seconds) in chat_gc_pause_seconds{generation}.

    Installs a `gc.callbacks` hook once per process; calling it again does nothing.
    """
    if _observe not in gc.callbacks:
        gc.callbacks.append(_observe)


def freeze_startup_objects() -> int:
    """Collect once, then move every object alive into the collector's permanent generation.

    Call once per worker process, after the app is built and before it serves: what is alive
    then is the start-up (above). Objects created later are collected as before, and
    reference counting still frees a frozen object once nothing refers to it; only a frozen
    object caught in a reference cycle that later becomes garbage is never freed. Returns how
    many objects are frozen (`gc.get_freeze_count()`, also `chat_gc_frozen_objects`).
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
