"""Fixtures for tests of the deployment: real clusters started by the launcher (testkit.cluster).

The cluster tests here and the fault-injection tests reuse the same Cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.cluster import Cluster
from testkit.processes import HARNESS_LIMITS, require_program


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator:
    """Factory: `start_cluster(workers=3, async_mode=..., env={...})` -> a started Cluster.

    Real redis-server (private), real nginx, real worker processes on free ports; all of
    them are stopped when the test ends, whatever it did to them.
    """
    require_program("nginx")
    require_program("redis-server")
    started: list[Cluster] = []

    def start(**options) -> Cluster:
        run_dir = tmp_path / f"cluster-{len(started) + 1}"
        options["env"] = {**HARNESS_LIMITS, **options.get("env", {})}
        cluster = Cluster(run_dir, http_port=None, **options)
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One gevent cluster for the tests that leave it as they found it (no kills, no stops)."""
    require_program("nginx")
    require_program("redis-server")
    cluster = Cluster(
        tmp_path_factory.mktemp("shared-cluster"),
        http_port=None,
        async_mode="gevent",
        # ACCESS_LOG: test_cluster_nginx reads the workers' request lines (no 400 reached one).
        env={**HARNESS_LIMITS, "ACCESS_LOG": "1"},
    )
    try:
        yield cluster.start()
    finally:
        cluster.stop()
