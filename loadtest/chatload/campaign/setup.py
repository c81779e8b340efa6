"""The servers a group of scenarios runs against, started and stopped by testkit."""

from __future__ import annotations

from pathlib import Path

from testkit.cluster import Cluster
from testkit.processes import NodePeer, RedisServer, cpu_seconds

from ..stack import LOAD_LIMITS
from .measure import handler_histogram
from .scenarios import Scenario


class Setup:
    """Servers for a group of scenarios: `targets`, `host`, and CPU counters by role.

    chat: a Cluster (workers, private Redis or Redis Cluster, nginx) on `database_url`, every
    worker signing with `secret`; node: Node peers on a private redis-server.
    """

    def __init__(self, sc: Scenario, workdir: Path, database_url: str, secret: str) -> None:
        self.servers = sc.servers
        self.cluster: Cluster | None = None
        self.redis: RedisServer | None = None
        self.peers: list[NodePeer] = []
        workdir.mkdir(parents=True, exist_ok=True)
        if sc.servers == "chat":
            self.cluster = Cluster(
                workdir,
                workers=sc.workers,
                http_port=None,
                database_url=database_url,
                async_mode=sc.async_mode,
                env={"SECRET_KEY": secret, **LOAD_LIMITS, **sc.env},
                redis_mode=sc.redis,
            ).start()
        else:
            self.redis = RedisServer(workdir)
            try:
                for i in range(sc.workers):
                    self.peers.append(NodePeer(workdir, self.redis.url, f"peer-{i + 1}"))
            except BaseException:
                self.stop()
                raise

    @property
    def host(self) -> str:
        return self.cluster.url if self.cluster else self.peers[0].url

    @property
    def targets(self) -> str:
        """Comma-separated base URLs for --chat-targets: empty for the cluster (nginx only)."""
        return "" if self.cluster else ",".join(p.url for p in self.peers)

    @property
    def direct_targets(self) -> str:
        """The chat workers' own base URLs, bypassing nginx."""
        return ",".join(w.url for w in self.cluster.workers) if self.cluster else self.targets

    def server_pids(self) -> list[int]:
        if self.cluster:
            return [w.pid for w in self.cluster.workers]
        return [p.pid for p in self.peers]

    def server_cpu(self) -> float:
        """The servers' user + system CPU seconds so far, summed."""
        return sum(cpu_seconds(pid) for pid in self.server_pids())

    def redis_pids(self) -> list[int]:
        """The redis-server processes: one, or each node of the Redis Cluster."""
        if self.cluster and self.cluster.redis_cluster is not None:
            return [node.pid for node in self.cluster.redis_cluster.nodes]
        return [(self.cluster.redis if self.cluster else self.redis).pid]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far by role: servers, nginx (master and workers), redis."""
        out = {"servers": self.server_cpu()}
        out["nginx"] = cpu_seconds(self.cluster.nginx.pid, tree=True) if self.cluster else 0.0
        out["redis"] = sum(cpu_seconds(pid) for pid in self.redis_pids())
        return out

    def handler_histogram(self) -> dict[str, float]:
        """The chat workers' `message` handler histogram (measure.handler_histogram)."""
        return handler_histogram([w.url for w in self.cluster.workers] if self.cluster else [])

    def stop(self) -> None:
        if self.cluster:
            self.cluster.stop()
        for p in reversed(self.peers):
            p.stop()
        if self.redis:
            self.redis.stop()
