"""Fixtures for tests of the deployment: real clusters started by deploy/cluster.py.

Puts deploy/ on sys.path, so `import cluster` gives the launcher to every test under deploy/
(the cluster tests here, and fault-injection tests that reuse the same Cluster).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import Cluster  # noqa: E402

from testkit.processes import HARNESS_LIMITS, require_program  # noqa: E402


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
        env=HARNESS_LIMITS,
    )
    try:
        yield cluster.start()
    finally:
        cluster.stop()
