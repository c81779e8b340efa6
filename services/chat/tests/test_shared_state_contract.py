"""One contract, two backends: the same calls give the same results in memory and in Redis.

A laptop runs the in-memory state (one worker); a cluster runs it in a real redis-server (here a
private one on a free port). Presence, its counters and the rate limits must not change
behaviour with the deployment, so each test below runs on both, on a clock the test controls,
and pins the window edges: an entry whose expiry time has come is gone, and a rate-limit hit
exactly `seconds` old is still counted (by `hit`, `exhausted` and `retry_after` alike).
"""

from __future__ import annotations

import pytest
from limits.storage import memory as limits_memory
from limits.storage import redis as limits_redis

from chat.cluster import rate_limit, shared_state
from chat.cluster.rate_limit import RateLimiter, Rule
from chat.cluster.shared_state import MemoryState, RedisState, SharedState
from chat.errors import RateLimited
from testkit.clock import FakeClock as Clock


@pytest.fixture(params=["memory", "redis"])
def backend(request, monkeypatch) -> tuple[SharedState, Clock]:
    clock = Clock()
    for module in (shared_state, rate_limit, limits_memory, limits_redis):
        monkeypatch.setattr(module, "time", clock)
    if request.param == "memory":
        return MemoryState(), clock
    return RedisState(request.getfixturevalue("redis_server").url), clock


def test_members_live_until_their_expiry_time_and_not_at_it(backend):
    state, clock = backend
    start = clock.now
    state.add("k:room", "ann", ttl=10)
    state.add("k:room", "bob", ttl=20)
    keys = ["k:room", "k:never"]
    clock.now = start + 9.5
    assert sorted(state.members("k:room")) == ["ann", "bob"]
    assert state.live_counts(keys) == {"k:room": 2, "k:never": 0}
    clock.now = start + 10  # ann's expiry time: gone from every read
    assert state.members("k:room") == ["bob"]
    assert state.members_of(keys) == {"k:room": ["bob"], "k:never": []}
    assert state.live_counts(keys) == {"k:room": 1, "k:never": 0}
    # ... and the sweep drops exactly what the reads no longer show, once.
    assert state.sweep(keys) == ["k:room"]
    assert state.sweep(keys) == []
    assert state.members("k:room") == ["bob"]
    clock.now = start + 20
    assert state.members("k:room") == []
    assert state.live_counts(["k:room"]) == {"k:room": 0}
    assert state.sweep(keys) == ["k:room"]


def test_refresh_names_the_sets_that_lost_a_member_and_extends_the_rest(backend):
    state, clock = backend
    start = clock.now
    state.add("k:a", "x", ttl=10)
    state.add("k:b", "y", ttl=10)
    # All there (expired or not, until swept): nothing named; both live on from now.
    clock.now = start + 10
    assert state.refresh({"k:a": ["x"], "k:b": ["y"], "k:empty": []}, ttl=10) == []
    assert state.members_of(["k:a", "k:b"]) == {"k:a": ["x"], "k:b": ["y"]}
    state.remove("k:a", "x")
    state.remove("k:a", "x")  # removing twice is no error
    assert state.refresh({"k:a": ["x"], "k:b": ["y"]}, ttl=10) == ["k:a"]
    # Swept (what a Redis restart also does): the set that lost it is named again.
    clock.now = start + 20
    assert state.sweep(["k:a", "k:b", "k:empty"]) == ["k:a", "k:b"]
    assert state.refresh({"k:a": ["x"], "k:b": ["y", "z"]}, ttl=10) == ["k:a", "k:b"]
    assert sorted(state.members("k:b")) == ["y", "z"]


def test_stamps_change_with_every_write_and_ensure_keeps_the_first_value(backend):
    state, _ = backend
    assert state.stamps(["k:stamp", "k:other"]) == [None, None]
    state.add("k:room", "ann", ttl=10, stamp="k:stamp")
    first = state.stamps(["k:stamp"])[0]
    assert isinstance(first, str)
    state.remove("k:room", "ann", stamp="k:stamp")
    second = state.stamps(["k:stamp"])[0]
    assert isinstance(second, str) and second != first
    state.stamp(["k:stamp", "k:other"])
    third, other = state.stamps(["k:stamp", "k:other"])
    assert len({first, second, third}) == 3 and isinstance(other, str)
    assert state.ensure("k:epoch", "one") == "one"
    assert state.ensure("k:epoch", "two") == "one"
    assert state.ping() is True


AMOUNT, SECONDS = 2, 10


@pytest.fixture
def limiter(backend) -> tuple[RateLimiter, Clock]:
    state, clock = backend
    return RateLimiter(state, {rate_limit.MESSAGES: Rule(AMOUNT, SECONDS, "messages")}), clock


def test_a_hit_exactly_the_window_old_still_counts_for_hit_exhausted_and_retry_after(limiter):
    limiter, clock = limiter
    start = clock.now
    assert limiter.hit(rate_limit.MESSAGES, "ann")
    clock.now = start + 4
    assert limiter.hit(rate_limit.MESSAGES, "ann")
    assert limiter.exhausted(rate_limit.MESSAGES, "ann")
    assert limiter.retry_after(rate_limit.MESSAGES, "ann") == SECONDS - 4
    # The first hit is exactly SECONDS old: inside the window for every question asked.
    clock.now = start + SECONDS
    assert limiter.exhausted(rate_limit.MESSAGES, "ann")
    with pytest.raises(RateLimited) as refused:
        limiter.refuse_if_exhausted(rate_limit.MESSAGES, "ann")
    assert limiter.retry_after(rate_limit.MESSAGES, "ann") == 0.0  # it leaves right now
    assert (refused.value.code, refused.value.retry_after) == ("rate_limited", 1)  # whole s
    assert not limiter.hit(rate_limit.MESSAGES, "ann")
    # A moment later it has left: one hit is admitted, and the second hit bounds the next.
    clock.now = start + SECONDS + 0.5
    assert not limiter.exhausted(rate_limit.MESSAGES, "ann")
    assert limiter.hit(rate_limit.MESSAGES, "ann")
    assert limiter.exhausted(rate_limit.MESSAGES, "ann")
    assert limiter.retry_after(rate_limit.MESSAGES, "ann") == 4 + SECONDS - (SECONDS + 0.5)
    # Nobody else was counted.
    assert not limiter.exhausted(rate_limit.MESSAGES, "bob")


def test_upstream_limits_memory_storage_keeps_hits_newest_first_and_leaves_out_the_edge(
    monkeypatch,
):
    """What EdgeInclusiveMemoryStorage relies on, on limits' own MemoryStorage: `events[key]`
    holds the hits newest first with their `atime`. The second half fails once upstream counts
    the edge hit itself: EdgeInclusiveMemoryStorage can then go."""
    clock = Clock()
    monkeypatch.setattr(limits_memory, "time", clock)
    storage = limits_memory.MemoryStorage()
    start = clock.now
    assert storage.acquire_entry("k", 2, SECONDS)
    clock.now = start + 4
    assert storage.acquire_entry("k", 2, SECONDS)
    assert [e.atime for e in storage.events["k"]] == [start + 4, start]
    clock.now = start + SECONDS
    assert not storage.acquire_entry("k", 2, SECONDS)  # the edge hit counts here ...
    assert storage.get_moving_window("k", 2, SECONDS) == (start + 4, 1)  # ... not here
