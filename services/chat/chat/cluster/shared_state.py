"""Expiring sets, in Redis for a cluster or in memory for one worker (rate limits: rate_limit.py).

Both backends keep the same semantics, so presence and rate limits behave the same on a
laptop and in a cluster; only Redis makes them visible across workers
(tests/test_shared_state_contract.py runs the same calls on both). One difference is
accepted: a stamp expires in Redis after STAMP_TTL_SECONDS and never in memory.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

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
# A stamp marks "this changed"; readers only compare it with the one they saw last. It
# expires so that rooms nobody uses any more leave nothing behind within two minutes (a
# client joining thousands of new names must not grow Redis for a day); a reader that finds
# it gone reads the room's list once more and is none the worse.
STAMP_TTL_SECONDS = 120


def new_stamp() -> str:
    """A value no earlier stamp had, on any worker, before or after a Redis restart."""
    return secrets.token_hex(8)


class StateUnavailable(Exception):
    """The shared state could not be reached; callers decide whether to carry on without it."""


class SharedState(Protocol):
    """Raises StateUnavailable when the backend cannot be reached."""

    def add(self, key: str, member: str, ttl: float, stamp: str | None = None) -> None: ...
    def remove(self, key: str, member: str, stamp: str | None = None) -> None: ...
    def refresh(self, entries: dict[str, list[str]], ttl: float) -> list[str]: ...
    def members(self, key: str) -> list[str]: ...
    def members_of(self, keys: list[str]) -> dict[str, list[str]]: ...
    def stamp(self, keys: list[str]) -> None: ...
    def stamps(self, keys: list[str]) -> list[str | None]: ...
    def ensure(self, key: str, value: str) -> str: ...
    def live_counts(self, keys: list[str]) -> dict[str, int]: ...
    def sweep(self, keys: list[str]) -> list[str]: ...
    def ping(self) -> bool: ...


class MemoryState:
    """One worker's state, for the embedded single-worker default."""

    def __init__(self) -> None:
        self._sets: dict[str, dict[str, float]] = defaultdict(dict)
        self._values: dict[str, str] = {}

    def add(self, key: str, member: str, ttl: float, stamp: str | None = None) -> None:
        self._sets[key][member] = time.time() + ttl
        if stamp is not None:
            self.stamp([stamp])

    def remove(self, key: str, member: str, stamp: str | None = None) -> None:
        entries = self._sets.get(key, {})
        entries.pop(member, None)
        if not entries:  # nobody sweeps a set nobody is in
            self._sets.pop(key, None)
        if stamp is not None:
            self.stamp([stamp])

    def refresh(self, entries: dict[str, list[str]], ttl: float) -> list[str]:
        expires, gained = time.time() + ttl, []
        for key, members in entries.items():
            present = self._sets[key]
            before = len(present)
            # Set operations in C: this runs over every socket of the worker every TTL/3.
            present.update(dict.fromkeys(members, expires))
            if len(present) > before:  # some were not there (they had expired and gone)
                gained.append(key)
        return gained

    def members(self, key: str) -> list[str]:
        now = time.time()
        return [m for m, exp in self._sets.get(key, {}).items() if exp > now]

    def live_counts(self, keys: list[str]) -> dict[str, int]:
        return {key: len(self.members(key)) for key in keys}

    def members_of(self, keys: list[str]) -> dict[str, list[str]]:
        return {key: self.members(key) for key in keys}

    def stamp(self, keys: list[str]) -> None:
        for key in keys:
            self._values[key] = new_stamp()

    def stamps(self, keys: list[str]) -> list[str | None]:
        return [self._values.get(key) for key in keys]

    def ensure(self, key: str, value: str) -> str:
        return self._values.setdefault(key, value)

    def sweep(self, keys: list[str]) -> list[str]:
        now, changed = time.time(), []
        for key in keys:
            entries = self._sets.get(key)
            if entries is None:
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
    def wrapper(self: RedisState, *args: Any, **kwargs: Any) -> T:
        if time.monotonic() < self.down_until:
            raise StateUnavailable(f"redis: unreachable ({self.last_error})")
        try:
            return method(self, *args, **kwargs)
        except redis.RedisError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.down_until = time.monotonic() + REDIS_RETRY_AFTER_SECONDS
            raise StateUnavailable(f"redis: {self.last_error}") from None

    return wrapper


def _set_ttl(ttl: float) -> int:
    """A set's own expiry: past every entry's (each write sets both), so a set that nobody
    writes any more disappears by itself; no index of sets, no key that every worker touches."""
    return int(ttl * 2) + 1


# KEYS: sorted sets scored by expiry; ARGV[1]: the exclusive lower bound (`_after`).
_COUNT_LIVE = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('ZCOUNT', key, ARGV[1], '+inf')
end
return counts
"""


def _after(now: float) -> str:
    """A score range's exclusive lower bound: an entry whose expiry time is `now` is gone, as
    in MemoryState and as SWEEP (ZREMRANGEBYSCORE -inf..now, inclusive) removes it. An
    inclusive bound counted it live for the instant the sweep dropped it."""
    return f"({now!r}"


def quick_retry() -> Retry:
    """One retry, on a broken connection only (what a restarted Redis leaves in the pool):
    redis-py's default (retries with backoff, timeouts included) would hold a handler for
    seconds while Redis hangs."""
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


class RedisState:
    """Cluster-wide state: sorted sets scored by expiry time, indexed while they have entries."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = redis_client(
            url,
            socket_timeout=REDIS_CALL_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_CALL_TIMEOUT_SECONDS,
            retry=quick_retry(),
            decode_responses=True,
        )
        self.down_until = 0.0
        self.last_error = ""
        # EVALSHA; after Redis lost its scripts, SCRIPT LOAD and EVALSHA again (redis-py's Script).
        self._count_live = (
            self.redis.register_script(_COUNT_LIVE) if isinstance(self.redis, redis.Redis) else None
        )

    @_unavailable_on_redis_error
    def add(self, key: str, member: str, ttl: float, stamp: str | None = None) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(key, {member: time.time() + ttl})
        pipe.expire(key, _set_ttl(ttl))
        if stamp is not None:  # after the change, so whoever sees the stamp sees the change
            pipe.set(stamp, new_stamp(), ex=STAMP_TTL_SECONDS)
        pipe.execute()

    @_unavailable_on_redis_error
    def remove(self, key: str, member: str, stamp: str | None = None) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(key, member)
        if stamp is not None:
            pipe.set(stamp, new_stamp(), ex=STAMP_TTL_SECONDS)
        pipe.execute()

    @_unavailable_on_redis_error
    def refresh(self, entries: dict[str, list[str]], ttl: float) -> list[str]:
        """Rewrite the entries' expiry; returns the keys that had lost some of them."""
        keys = [key for key, members in entries.items() if members]
        if not keys:
            return []
        expires = time.time() + ttl
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.zadd(key, dict.fromkeys(entries[key], expires))
            pipe.expire(key, _set_ttl(ttl))
        added = pipe.execute()[::2]  # ZADD counts only members that were not there
        return [key for key, n in zip(keys, added, strict=True) if n]

    @_unavailable_on_redis_error
    def members(self, key: str) -> list[str]:
        # str, not bytes: the client decodes responses (redis-py's types cannot tell).
        return cast(list[str], self.redis.zrangebyscore(key, _after(time.time()), "+inf"))

    @_unavailable_on_redis_error
    def members_of(self, keys: list[str]) -> dict[str, list[str]]:
        if not keys:
            return {}
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.zrangebyscore(key, _after(now), "+inf")
        return dict(zip(keys, pipe.execute(), strict=True))

    @_unavailable_on_redis_error
    def live_counts(self, keys: list[str]) -> dict[str, int]:
        """How many live members each key has: one round trip for all of them.

        On one Redis, one script call counts them all: a big room's activity flush asks for
        every member's socket count each second, and a pipeline of 1,000 ZCOUNTs cost the
        worker 8.4 ms of CPU against 0.8 ms for the script (redis-py 8.1, hiredis). A cluster's
        keys lie in many slots, which a script cannot span: there, the pipeline.
        """
        if not keys:
            return {}
        after = _after(time.time())
        if self._count_live is not None:
            try:
                return dict(zip(keys, self._count_live(keys=keys, args=[after]), strict=True))
            except redis.exceptions.ResponseError as exc:
                # Scripts refused for good (an ACL without @scripting, EVAL renamed away):
                # counted as a cluster counts them from now on, not failed as an outage
                # every second. Passing refusals (BUSY, READONLY after a failover) are outages.
                permanent = isinstance(exc, redis.exceptions.NoPermissionError)
                if not permanent and "unknown command" not in str(exc).lower():
                    raise
                log.warning("presence counts without a script: %s", exc)
                self._count_live = None
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.zcount(key, after, "+inf")
        return dict(zip(keys, pipe.execute(), strict=True))

    @_unavailable_on_redis_error
    def stamp(self, keys: list[str]) -> None:
        if not keys:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, new_stamp(), ex=STAMP_TTL_SECONDS)
        pipe.execute()

    @_unavailable_on_redis_error
    def stamps(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        if isinstance(self.redis, redis.RedisCluster):  # keys in many slots: one MGET per node
            return cast(list[str | None], self.redis.mget_nonatomic(keys))
        return cast(list[str | None], self.redis.mget(keys))  # decoded, as in members()

    @_unavailable_on_redis_error
    def ensure(self, key: str, value: str) -> str:
        """Set `key` to `value` unless it has one; returns the value it has now."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(key, value, nx=True)
        pipe.get(key)
        return pipe.execute()[1]

    @_unavailable_on_redis_error
    def sweep(self, keys: list[str]) -> list[str]:
        """Drop the expired entries of these sets; returns the sets that had some."""
        if not keys:
            return []
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.zremrangebyscore(key, "-inf", now)
        removed = pipe.execute()
        # Only the worker whose ZREMRANGEBYSCORE removed entries reports the change.
        return [key for key, n in zip(keys, removed, strict=True) if n]

    @_unavailable_on_redis_error
    def ping(self) -> bool:
        return bool(self.redis.ping())


CLUSTER_SCHEME = "redis+cluster://"


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """`redis+cluster://[[user]:password@]h1:p1,h2:p2` -> ([(h1, p1), (h2, p2)], options)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    options: dict[str, Any] = {}
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        user, _, password = auth.partition(":")
        if user:
            options["username"] = unquote(user)
        if password:
            options["password"] = unquote(password)
    nodes = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":")
        nodes.append((host or "127.0.0.1", int(port or 6379)))
    if not nodes:
        raise ValueError(f"no nodes in {url!r}")
    return nodes, options


def redis_client(url: str, **options: Any) -> redis.Redis | redis.RedisCluster:
    """A client for REDIS_URL, read the way the message queue reads it.

    `redis+cluster://[:password@]host1:port1,host2:port2` is a Redis Cluster (redis-py's
    RedisCluster, which follows the slot map and MOVED/ASK by itself).

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
    if url.startswith(CLUSTER_SCHEME):
        nodes, auth = parse_cluster_url(url)
        return redis.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(host, port) for host, port in nodes],
            max_connections=REDIS_POOL_SIZE * 20,
            **auth,
            **options,
        )
    if "socket_timeout" in options:
        options.setdefault("timeout", options["socket_timeout"])  # the wait for a free connection
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=REDIS_POOL_SIZE, **options)
    return redis.Redis(connection_pool=pool)


def make_state(redis_url: str | None) -> SharedState:
    return RedisState(redis_url) if redis_url else MemoryState()
