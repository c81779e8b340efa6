"""Which Redis node serves a channel: the one Redis, or the slot's owner in a Redis Cluster.

REDIS_URL schemes:
- `redis://host:port/db` (and `rediss://`, `unix://`): one Redis.
- `redis+sentinel://[:password@]host1:port1,host2:port2/db/service`: one Redis, its master
  found through the Sentinels (shared_state.redis_client).
- `redis+cluster://[:password@]host1:port1,host2:port2`: a Redis Cluster; the listed nodes are
  where the slot map is first read (any one reachable node is enough).

A Cluster's sharded channels live on the node that owns their hash slot (computed as for a
key, hash tags included). The slot map is read with CLUSTER SLOTS from any reachable node, and
read again when a node says MOVED or drops our subscriptions because a slot moved.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from .shared_state import CLUSTER_SCHEME, parse_cluster_url, redis_client

log = logging.getLogger(__name__)

SINGLE_NODE = "redis"
SLOTS = 16384


class Topology:
    """Clients per node, and the node of each channel."""

    def __init__(self, url: str, **options: Any) -> None:
        self.cluster = url.startswith(CLUSTER_SCHEME)
        self._options = {
            "socket_connect_timeout": 2.0,
            "retry": Retry(NoBackoff(), 0),  # the caller retries, reconnecting in between
            "protocol": 2,  # see listen_connection
            **options,
        }
        self._lock = threading.Lock()
        self._clients: dict[str, redis.Redis] = {}
        if self.cluster:
            nodes, auth = parse_cluster_url(url)
            self._options.update(auth)
            self._seeds = [f"{h}:{p}" for h, p in nodes]
            self._owners: list[str | None] = [None] * SLOTS
            try:
                self.refresh()
            except redis.RedisError as exc:  # not up yet: the links read the map when it is
                log.warning("redis cluster slot map not read yet: %s", exc)
        else:
            client = redis_client(url, **self._options)
            assert isinstance(client, redis.Redis), client  # not a cluster URL: one client
            self._clients[SINGLE_NODE] = client

    def node_of(self, channel: str) -> str:
        """The node that serves `channel` (a node name `host:port`, or "redis")."""
        if not self.cluster:
            return SINGLE_NODE
        owner = self._owners[key_slot(channel.encode())]
        return owner if owner is not None else self._seeds[0]

    def publisher(self, channel: str) -> redis.Redis:
        """A client (with its own pool) on the node that serves `channel`."""
        return self.client(self.node_of(channel))

    def client(self, node: str) -> redis.Redis:
        client = self._clients.get(node)
        if client is None:
            host, _, port = node.rpartition(":")
            with self._lock:
                client = self._clients.setdefault(
                    node, redis.Redis(host=host, port=int(port), **self._options)
                )
        return client

    def listen_connection(self, node: str, read_timeout: float) -> Any:
        """A new pub/sub connection to `node`, not in any pool: the caller owns it.

        RESP2: its subscription replies and messages are plain arrays read in order (redis-py
        8 speaks RESP3 by default, where they are push messages handed to a callback).
        """
        pool = self.client(node).connection_pool
        options = {**pool.connection_kwargs, "socket_timeout": read_timeout}
        return pool.connection_class(**options)

    def moved(self, slot: int, node: str) -> None:
        """A node answered MOVED: the slot is `node`'s now."""
        if self.cluster:
            self._owners[slot] = node

    def refresh(self) -> None:
        """Read the slot map again (a Cluster only); raises redis.RedisError if no node answers."""
        if not self.cluster:
            return
        error: Exception | None = None
        known = list(dict.fromkeys([*self._seeds, *(o for o in set(self._owners) if o)]))
        for node in known:
            try:
                slots = self.client(node).execute_command("CLUSTER", "SLOTS")
            except redis.RedisError as exc:
                error = exc
                continue
            owners: list[str | None] = [None] * SLOTS
            for start, end, primary, *_replicas in slots:
                host = primary[0].decode() if isinstance(primary[0], bytes) else primary[0]
                name = f"{host or node.rpartition(':')[0]}:{primary[1]}"
                owners[start : end + 1] = [name] * (end - start + 1)
            self._owners = owners
            return
        raise redis.ConnectionError(f"no cluster node answered CLUSTER SLOTS: {error}")

    def nodes(self) -> list[str]:
        """Every primary that owns slots now (one name for a single Redis)."""
        if not self.cluster:
            return [SINGLE_NODE]
        return sorted({o for o in self._owners if o})
