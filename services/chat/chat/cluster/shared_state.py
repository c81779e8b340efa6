"""Expiring sets, in Redis for a cluster or in memory for one worker (rate limits: rate_limit.py).

Both backends keep the same semantics, so presence and rate limits behave the same on a
laptop and in a cluster; only Redis makes them visible across workers.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

T = TypeVar("T")

# Presence and rate limits sit on the path of every event: a hung Redis may cost a handler
# this long, never block it. Loopback round trips take well under a millisecond.
REDIS_CALL_TIMEOUT_SECONDS = 1.0
# After a failed call, calls fail at once for this long instead of each waiting out the
# timeout; the liveness loop's next beat (every 2 s) probes again.
REDIS_RETRY_AFTER_SECONDS = 1.0
# Connections one worker may hold to Redis for shared state. When all are busy (a thousand
# clients disconnecting at once) a caller waits for one, up to the call timeout: redis-py's
# own pool (100 since redis-py 8) raises at once instead, which read as "Redis unreachable"
# and made presence and rate limits fail open for a second under a disconnect storm.
REDIS_POOL_SIZE = 50


class StateUnavailable(Exception):
    """The shared state could not be reached; callers decide whether to carry on without it."""


class SharedState(Protocol):
    """Raises StateUnavailable when the backend cannot be reached."""

    def add(self, key: str, member: str, ttl: float) -> None: ...
    def remove(self, key: str, member: str) -> None: ...
    def refresh(self, entries: dict[str, list[str]], ttl: float) -> None: ...
    def members(self, key: str) -> list[str]: ...
    def sweep(self, prefix: str) -> list[str]: ...
    def ping(self) -> bool: ...


class MemoryState:
    """One worker's state, for the embedded single-worker default."""

    def __init__(self) -> None:
        self._sets: dict[str, dict[str, float]] = defaultdict(dict)

    def add(self, key: str, member: str, ttl: float) -> None:
        self._sets[key][member] = time.time() + ttl

    def remove(self, key: str, member: str) -> None:
        self._sets.get(key, {}).pop(member, None)

    def refresh(self, entries: dict[str, list[str]], ttl: float) -> None:
        expires = time.time() + ttl
        for key, members in entries.items():
            for member in members:
                self._sets[key][member] = expires

    def members(self, key: str) -> list[str]:
        now = time.time()
        return [m for m, exp in self._sets.get(key, {}).items() if exp > now]

    def sweep(self, prefix: str) -> list[str]:
        now, changed = time.time(), []
        for key, entries in list(self._sets.items()):
            if not key.startswith(prefix):
                continue
            dead = [m for m, exp in entries.items() if exp <= now]
            for m in dead:
                del entries[m]
            if dead:
                changed.append(key)
            if not entries:
                del self._sets[key]
        return changed

    def ping(self) -> bool:
        return True


def _unavailable_on_redis_error(method: Callable[..., T]) -> Callable[..., T]:
    """Turn Redis errors into StateUnavailable, and fail fast for a moment after one."""

    @functools.wraps(method)
    def wrapper(self: RedisState, *args, **kwargs) -> T:
        if time.monotonic() < self.down_until:
            raise StateUnavailable(f"redis: unreachable ({self.last_error})")
        try:
            return method(self, *args, **kwargs)
        except redis.RedisError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.down_until = time.monotonic() + REDIS_RETRY_AFTER_SECONDS
            raise StateUnavailable(f"redis: {self.last_error}") from None

    return wrapper


# Drops a set's expired entries, and the set's name from the index once it is empty, in one
# step: a worker adding an entry between the two could otherwise be dropped from the index
# (and its set never swept). So the index names only sets with live entries.
_SWEEP_SCRIPT = """
local removed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SREM', KEYS[2], KEYS[1])
end
return removed
"""


class RedisState:
    """Cluster-wide state: sorted sets scored by expiry time, indexed while they have entries."""

    # Names every key with a set in it, so a sweep need not SCAN the keyspace.
    INDEX = "chat:ttlsets"

    def __init__(self, url: str) -> None:
        # Short timeouts and a single retry, on a broken connection only (what a restarted
        # Redis leaves in the pool): redis-py's default of 10 retries with backoff would hold a
        # handler for seconds while Redis is down.
        self.redis = redis_client(
            url,
            socket_timeout=REDIS_CALL_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_CALL_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            decode_responses=True,
        )
        self.down_until = 0.0
        self.last_error = ""
        self._sweep = self.redis.register_script(_SWEEP_SCRIPT)

    @_unavailable_on_redis_error
    def add(self, key: str, member: str, ttl: float) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(key, {member: time.time() + ttl})
        pipe.sadd(self.INDEX, key)
        pipe.execute()

    @_unavailable_on_redis_error
    def remove(self, key: str, member: str) -> None:
        self.redis.zrem(key, member)

    @_unavailable_on_redis_error
    def refresh(self, entries: dict[str, list[str]], ttl: float) -> None:
        if not entries:
            return
        expires = time.time() + ttl
        pipe = self.redis.pipeline(transaction=False)
        for key, members in entries.items():
            if members:
                pipe.zadd(key, dict.fromkeys(members, expires))
                pipe.sadd(self.INDEX, key)
        pipe.execute()

    @_unavailable_on_redis_error
    def members(self, key: str) -> list[str]:
        return self.redis.zrangebyscore(key, time.time(), "+inf")

    @_unavailable_on_redis_error
    def sweep(self, prefix: str) -> list[str]:
        keys = [k for k in self.redis.smembers(self.INDEX) if k.startswith(prefix)]
        if not keys:
            return []
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            self._sweep(keys=[key, self.INDEX], args=[now], client=pipe)
        removed = pipe.execute()
        # Only the worker whose ZREMRANGEBYSCORE removed entries reports the change.
        return [key for key, n in zip(keys, removed, strict=True) if n]

    @_unavailable_on_redis_error
    def ping(self) -> bool:
        return bool(self.redis.ping())


def redis_client(url: str, **options) -> redis.Redis:
    """A client for REDIS_URL, read the way the message queue reads it.

    `redis+sentinel://[:password@]host1:port1,host2:port2/db/service` asks the Sentinels for
    the current master (and again after a failover), exactly as python-socketio's RedisManager
    does with the same URL; any other URL goes to redis-py's from_url.
    """
    if url.startswith("redis+sentinel://"):
        from redis.sentinel import Sentinel
        from socketio.redis_manager import parse_redis_sentinel_url

        sentinels, service, connection = parse_redis_sentinel_url(url)
        # The connection options apply to the master's connections; "socketio" is the
        # RedisManager's default channel, which it also takes as the default service name.
        # redis-py has no blocking Sentinel pool: a ceiling far above what one worker's
        # greenlets can hold at once stands in for the wait.
        return Sentinel(sentinels, **options, **connection).master_for(
            service or "socketio", max_connections=REDIS_POOL_SIZE * 20
        )
    if "socket_timeout" in options:
        options.setdefault("timeout", options["socket_timeout"])  # the wait for a free connection
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=REDIS_POOL_SIZE, **options)
    return redis.Redis(connection_pool=pool)


def make_state(redis_url: str | None) -> SharedState:
    return RedisState(redis_url) if redis_url else MemoryState()
