"""The start-up frozen out of garbage collection (chat/garbage.py); collections counted."""

from __future__ import annotations

import gc
import weakref

import pytest
import requests

from chat import garbage, metrics


def collections(generation: int) -> float:
    value = metrics.registry.get_sample_value(
        "python_gc_collections_total", {"generation": str(generation)}
    )
    assert value is not None
    return value


@pytest.fixture
def collector_held():
    """No automatic collection during the test: the only collections are the test's own."""
    was_enabled = gc.isenabled()
    gc.disable()
    yield
    if was_enabled:
        gc.enable()


def test_metrics_count_each_collection_under_its_generation(collector_held):
    before = [collections(g) for g in range(3)]
    gc.collect(2)
    gc.collect(0)
    gc.collect(0)
    assert [collections(g) - b for g, b in zip(range(3), before, strict=True)] == [2, 0, 1]


class Node:
    """An object that can take part in a reference cycle."""

    other: Node | None = None


def test_objects_alive_at_the_freeze_are_no_longer_walked_and_later_ones_still_are(collector_held):
    startup = Node()
    try:
        frozen = garbage.freeze_startup_objects()
        # Equal unless another thread of the test process (a client's, a worker fixture's)
        # drops the last reference to a frozen object in between: reference counting frees
        # it from the permanent generation, so the count can only go down (CI saw -2).
        assert 0 < gc.get_freeze_count() <= frozen
        assert frozen - gc.get_freeze_count() < 1000
        assert not any(obj is startup for obj in gc.get_objects())
        assert 0 < metrics.registry.get_sample_value("chat_gc_frozen_objects") <= frozen
        # What is created while serving is collected as before, cycles included.
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()  # the test process goes on as it was
    assert gc.get_freeze_count() == 0
    assert any(obj is startup for obj in gc.get_objects())


def test_a_worker_has_frozen_its_start_up_and_reports_its_collections(worker):
    text = requests.get(worker.url + "/metrics", timeout=5).text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith(("chat_gc_", "python_gc_", "process_"))
    }
    # A worker's start-up is tens of thousands of objects (Flask, SQLAlchemy, python-socketio).
    assert samples["chat_gc_frozen_objects"] > 10_000
    # The freeze's own full collection, at least.
    assert samples['python_gc_collections_total{generation="2"}'] >= 1
    assert samples["process_resident_memory_bytes"] > 10_000_000
    assert samples["process_open_fds"] > 0
