"""The cyclic garbage collector's share of a worker's latency, made smaller.

A full (generation 2) collection walks every object the collector tracks, and nothing else
runs on the hub meanwhile: every delivery due on the worker waits. Most of those objects
are the worker's own start-up (modules, functions, the app, SQLAlchemy's metadata: about
127,000 in a worker), which live as long as the process and are never garbage. Frozen
(`gc.freeze`, the standard library's way to exclude them), they are no longer walked.

Measured at 1,000 members x 20 msg/s on three workers (each worker ran one full collection
in a 30 s send window): 80-122 ms with 141-168k tracked objects; 15-53 ms with 25-43k once
the start-up objects were frozen (docs/BENCHMARKS.md, "Garbage collection pauses").

The pauses were measured with a `gc.callbacks` probe, which the worker does not keep: a
callback runs wherever a collection starts, including at the recursion limit inside the
JSON decoder fed a hostile nesting, where calling it fails and prints a traceback. /metrics
has the collections by generation (python_gc_collections_total) and chat_gc_frozen_objects.
"""

from __future__ import annotations

import gc


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
