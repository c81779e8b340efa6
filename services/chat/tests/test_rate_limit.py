"""The rate limiter decides alike on both storages, and a window edge admits no extra burst.

One schedule of hits, replayed on a clock the test controls, against the in-memory storage
(one worker), against a real private redis-server and against a real Redis Cluster (a
cluster of workers on either): the admits and refusals
must be the same, and never more than `amount` in any `seconds`-long interval (the old
fixed window admitted twice the limit across its edge).
"""

from __future__ import annotations

import pytest
from limits.storage import memory as limits_memory
from limits.storage import redis as limits_redis

from chat.cluster import rate_limit
from chat.cluster.rate_limit import RateLimiter, Rule
from chat.cluster.shared_state import MemoryState, RedisState
from chat.errors import RateLimited
from testkit.clock import FakeClock as Clock

AMOUNT, SECONDS = 3, 10
# (time in seconds, admitted?). A fixed window [0, 10) + [10, 20) would admit the 10.1, 10.5
# and 11.0 hits: six in 10 s. The moving window admits a hit only once the hit AMOUNT places
# before it is more than SECONDS old.
SCHEDULE = [
    (1.0, True),
    (1.5, True),
    (9.9, True),
    (10.1, False),  # past the fixed window's edge: still three in the last 10 s
    (10.5, False),
    (11.0, False),  # the 1.0 hit is exactly 10 s old: still inside
    (11.05, True),  # it left the window
    (11.1, False),
    (11.6, True),  # the 1.5 hit left
    (19.95, True),  # the 9.9 hit left
    (20.0, False),
    (30.0, True),
    (30.0, True),
    (30.0, True),
    (30.0, False),
]


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def limiter(request, monkeypatch) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    for module in (limits_memory, limits_redis, rate_limit):
        monkeypatch.setattr(module, "time", clock)
    if request.param == "memory":
        state = MemoryState()
    elif request.param == "redis":
        state = RedisState(request.getfixturevalue("redis_server").url)
    else:  # a real 3-primary Redis Cluster, as `REDIS_URL=redis+cluster://...` names it
        state = RedisState(request.getfixturevalue("redis_cluster").url)
    rules = {rate_limit.MESSAGES: Rule(AMOUNT, SECONDS, "messages")}
    return RateLimiter(state, rules), clock


def test_one_schedule_same_outcome_on_both_storages(limiter):
    limiter, clock = limiter
    start = clock.now
    outcomes = []
    for at, _ in SCHEDULE:
        clock.now = start + at
        outcomes.append((at, limiter.hit(rate_limit.MESSAGES, "alice")))
    assert outcomes == SCHEDULE


def test_no_interval_of_the_window_holds_more_than_the_limit(limiter):
    limiter, clock = limiter
    start, admitted = clock.now, []
    for step in range(400):  # a hit every 0.1 s for 40 s
        clock.now = start + step / 10
        if limiter.hit(rate_limit.MESSAGES, "bob"):
            admitted.append(step / 10)
    for i, t in enumerate(admitted):
        in_window = [a for a in admitted[i:] if a < t + SECONDS]
        assert len(in_window) <= AMOUNT, (t, in_window)
    # And it is not stricter than the limit: AMOUNT per window, every window.
    assert admitted[:6] == [0.0, 0.1, 0.2, 10.1, 10.2, 10.3]


def test_refusals_say_when_to_retry_and_keys_are_separate(limiter):
    limiter, clock = limiter
    start = clock.now
    for _ in range(AMOUNT):
        limiter.check("carol")
    clock.now = start + 4
    assert limiter.exhausted(rate_limit.MESSAGES, "carol")
    assert not limiter.exhausted(rate_limit.MESSAGES, "dave")
    with pytest.raises(RateLimited) as refused:
        limiter.check("carol")
    assert refused.value.code == "rate_limited"
    assert refused.value.retry_after == SECONDS - 4  # the first hit leaves the window then
    assert refused.value.message == f"more than {AMOUNT} messages in {SECONDS} s; slow down"
    with pytest.raises(RateLimited):  # a refused hit is not counted, but refused again
        limiter.refuse_if_exhausted(rate_limit.MESSAGES, "carol")
    clock.now = start + SECONDS + 0.01
    limiter.check("carol")


def test_an_unreachable_redis_limits_nobody(redis_server):
    limiter = RateLimiter(
        RedisState(redis_server.url), {rate_limit.MESSAGES: Rule(1, SECONDS, "messages")}
    )
    assert limiter.hit(rate_limit.MESSAGES, "erin")
    assert not limiter.hit(rate_limit.MESSAGES, "erin")
    redis_server.stop()
    assert limiter.hit(rate_limit.MESSAGES, "erin")  # fails open
    assert not limiter.exhausted(rate_limit.MESSAGES, "erin")
