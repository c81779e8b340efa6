"""Rate limits, counted where every worker sees the same count: the `limits` library.

One strategy, the moving window, on both storages: `limits`' MemoryStorage for one worker
without Redis, its RedisStorage (one Lua script per hit, on our own Redis connection pool)
for a cluster. A moving window admits at most `amount` hits in ANY `seconds`-long interval,
so no burst at a window edge doubles the limit (a fixed window admits 2x across the edge),
and both storages decide alike: tests/test_rate_limit.py replays one schedule on both, and
tests/test_shared_state_contract.py pins the window's edge for hit, exhausted and retry_after.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from ..errors import RateLimited
from ..transport import upstream
from .shared_state import (
    CLUSTER_SCHEME,
    REDIS_CALL_TIMEOUT_SECONDS,
    REDIS_POOL_SIZE,
    REDIS_RETRY_AFTER_SECONDS,
    MemoryState,
    RedisState,
    SharedState,
    quick_retry,
)

log = logging.getLogger(__name__)

# The rules by name. What each counts, per what key, and who checks it:
MESSAGES = "messages"  # messages sent, per user (Socket.IO and REST)
TYPING = "typing"  # typing broadcasts, per user, room and worker: excess ones are dropped
JOINS = "joins"  # join events, per user
ROOM_CREATIONS = "room_creations"  # rooms (and direct conversations) created, per user
READS = "reads"  # read markers, per user
LOGIN_FAILURES = "login_failures"  # wrong passwords, per username
LOGIN_FAILURES_PER_ADDRESS = "login_failures_per_address"  # wrong passwords, per client address
REGISTRATIONS = "registrations"  # accounts created, per client address

# Windows of the count-only settings. A minute for what a live client does in bursts (joins
# after a reconnect, read markers while scrolling); 5 minutes for password guesses, so a
# locked-out person waits minutes, not an hour; an hour for what accumulates forever (rooms,
# accounts).
MINUTE, FIVE_MINUTES, HOUR = 60, 300, 3600


@dataclass(frozen=True)
class Rule:
    amount: int
    seconds: int
    what: str  # for the refusal message: "more than {amount} {what} in {seconds} s"
    # Counted in this worker's memory even with Redis: for what must cost no round trip and
    # can be reset at once (typing, on every message), where a per-worker bound suffices.
    local: bool = False


def rules_from_config(cfg: Mapping[str, Any]) -> dict[str, Rule]:
    """Every rule, with its amount (and the messages' window) from the settings."""
    return {
        MESSAGES: Rule(cfg["RATE_LIMIT_MESSAGES"], cfg["RATE_LIMIT_WINDOW_SECONDS"], "messages"),
        # A user's typing in a room comes through their socket's worker: coalescing there
        # bounds it (one per worker the user has sockets on) without a Redis call per key.
        TYPING: Rule(1, cfg["TYPING_INTERVAL_SECONDS"], "typing notices", local=True),
        JOINS: Rule(cfg["RATE_LIMIT_JOINS"], MINUTE, "joins"),
        ROOM_CREATIONS: Rule(cfg["RATE_LIMIT_ROOM_CREATIONS"], HOUR, "new rooms"),
        READS: Rule(cfg["RATE_LIMIT_READS"], MINUTE, "read markers"),
        LOGIN_FAILURES: Rule(cfg["RATE_LIMIT_LOGIN_FAILURES"], FIVE_MINUTES, "failed logins"),
        LOGIN_FAILURES_PER_ADDRESS: Rule(
            cfg["RATE_LIMIT_LOGIN_FAILURES_PER_ADDRESS"], FIVE_MINUTES, "failed logins"
        ),
        REGISTRATIONS: Rule(cfg["RATE_LIMIT_REGISTRATIONS"], HOUR, "registrations"),
    }


# limits 5.x keeps MemoryStorage's moving-window hits in `events[key]`, newest first, each
# with its `atime` (tested on 5.8.0; test_upstream_limits_* in test_shared_state_contract.py;
# the range is upstream.TESTED["limits"]).


class EdgeInclusiveMemoryStorage(MemoryStorage):
    """`limits`' MemoryStorage, whose moving window counts a hit exactly `expiry` old.

    Its own acquire_entry and both Redis scripts count that hit (a hit is refused while the
    one `amount` places back is `>= now - expiry`), but MemoryStorage.get_moving_window left
    it out: without Redis, `exhausted()` said "not exhausted" at the instant `hit()` still
    refused, and `retry_after` pointed at the next hit. Counted alike, both storages answer
    every question alike.
    """

    def __init__(self) -> None:
        upstream.require("limits", "EdgeInclusiveMemoryStorage (MemoryStorage.events)")
        super().__init__()

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(time of the oldest hit in the window, hits in the window); (now, 0) if none."""
        timestamp = time.time()
        inside = [
            e.atime for e in self.events.get(key, [])[:limit] if e.atime >= timestamp - expiry
        ]
        return (inside[-1], len(inside)) if inside else (timestamp, 0)


def make_storage(state: SharedState) -> Storage:
    """`limits`' storage over the same backend as the shared state (and its Redis pool)."""
    # `limits` types its storage options as scalars; redis-py takes this Retry object too.
    retry: dict[str, Any] = {"retry": quick_retry()}
    if isinstance(state, RedisState) and state.url.startswith(CLUSTER_SCHEME):
        # A RedisCluster has no single connection pool to share: `limits` builds its own
        # cluster client from the same URL (same scheme), with the shared state's timeouts.
        # Each limit is one key, so its Lua script runs on the key's node.
        return RedisClusterStorage(
            state.url,
            key_prefix="chat:limits",
            socket_timeout=REDIS_CALL_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_CALL_TIMEOUT_SECONDS,
            max_connections=REDIS_POOL_SIZE * 20,
            **retry,
        )
    if isinstance(state, RedisState):
        client = state.redis
        assert isinstance(client, redis.Redis), client  # a cluster took the branch above
        pool = client.connection_pool
        # The client `limits` builds on our pool takes redis-py's default retries (timeouts
        # retried with backoff: 6.5 s per message while Redis hung) unless given ours.
        return RedisStorage("redis://", connection_pool=pool, key_prefix="chat:limits", **retry)
    assert isinstance(state, MemoryState), state
    return EdgeInclusiveMemoryStorage()


class RateLimiter:
    """Named moving-window limits, shared by every worker through the storage.

    Fails open: while Redis is unreachable nobody is limited. Refusing every event during a
    Redis outage would turn a cache failure into a chat outage; a flood is then bounded by the
    outage (and the database still stores every message).
    """

    def __init__(self, state: SharedState, rules: Mapping[str, Rule]) -> None:
        self.storage = make_storage(state)
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.local_strategy = (
            self.strategy
            if isinstance(self.storage, MemoryStorage)
            else MovingWindowRateLimiter(EdgeInclusiveMemoryStorage())
        )
        self.rules: dict[str, Rule] = {}
        self._items: dict[str, RateLimitItemPerSecond] = {}
        self.configure(rules)
        # After a storage error, skip the storage for a moment instead of each call waiting
        # out the timeout (as RedisState does).
        self._down_until = 0.0

    def configure(self, rules: Mapping[str, Rule]) -> None:
        """Replace some rules (their counts so far stay in the storage)."""
        self.rules.update(rules)
        for name, rule in rules.items():
            self._items[name] = RateLimitItemPerSecond(rule.amount, rule.seconds, namespace=name)

    def _strategy(self, rule: str) -> MovingWindowRateLimiter:
        return self.local_strategy if self.rules[rule].local else self.strategy

    def check(self, key: str, rule: str = MESSAGES) -> None:
        """Count one hit of `rule` for `key`; RateLimited (with retry_after) past the limit."""
        if not self.hit(rule, key):
            spec = self.rules[rule]
            raise RateLimited(
                f"more than {spec.amount} {spec.what} in {spec.seconds} s; slow down",
                retry_after=self.retry_after(rule, key),
            )

    def hit(self, rule: str, key: str) -> bool:
        """Count one hit; False (and nothing counted) when the limit is reached."""
        return self._call(True, self._strategy(rule).hit, self._items[rule], key)

    def exhausted(self, rule: str, key: str) -> bool:
        """Whether the next hit would be refused (counts nothing)."""
        return not self._call(True, self._strategy(rule).test, self._items[rule], key)

    def refuse_if_exhausted(self, rule: str, key: str) -> None:
        """RateLimited if the next hit would be refused (counts nothing)."""
        if self.exhausted(rule, key):
            spec = self.rules[rule]
            raise RateLimited(
                f"more than {spec.amount} {spec.what} in {spec.seconds} s; try again later",
                retry_after=self.retry_after(rule, key),
            )

    def retry_after(self, rule: str, key: str) -> float:
        """Seconds until the oldest hit in the window leaves it (a hit is admitted again)."""
        stats = self._call(None, self._strategy(rule).get_window_stats, self._items[rule], key)
        if stats is None:
            return 1.0
        return max(0.0, stats.reset_time - time.time())

    def clear(self, rule: str, key: str) -> None:
        """Forget `key`'s hits of a local rule (a memory operation, no round trip)."""
        assert self.rules[rule].local, rule
        self.local_strategy.clear(self._items[rule], key)

    def _call(self, fallback: Any, method: Callable[..., Any], *args: Any) -> Any:
        if time.monotonic() < self._down_until:
            return fallback
        try:
            return method(*args)
        except Exception as exc:  # redis errors, unwrapped by limits: fail open
            self._down_until = time.monotonic() + REDIS_RETRY_AFTER_SECONDS
            log.warning("rate limit not enforced: %s: %s", type(exc).__name__, exc)
            return fallback
