"""Smoke run of the connection-density benchmark (`make bench-density`), so it cannot rot:
50 idle clients on a real chat worker and a real Node peer, a 2-second idle window."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from testkit.processes import REPO_ROOT, require_program

pytestmark = pytest.mark.e2e

CLIENTS = 50
# Two server start-ups, a few argon2 registrations, 2 x 50 connections and two 2-second idle
# windows take about 15 s on a quiet machine; generous for a loaded one.
RUN_TIMEOUT_SECONDS = 120


def test_bench_density_measures_both_servers_with_every_client_connected(tmp_path):
    require_program("make")
    require_program("node")
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "bench-density",
            # Relative, as `make bench-density`'s default is: the worker and the Node
            # clients run in other directories and must still find their files.
            f"RESULTS={os.path.relpath(tmp_path, REPO_ROOT)}",
            f"CLIENTS={CLIENTS}",
            "IDLE=2",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    rows = json.loads((tmp_path / "density.json").read_text())
    assert [r["server"] for r in rows] == ["chat", "node"]
    for row in rows:
        assert row["connected"] == CLIENTS, row
        assert row["connect_errors"] == 0 and row["idle_disconnects"] == 0, row
        assert row["notes"]["open_after_idle"] == CLIENTS, row
        assert row["connect_rate"] > 0 and row["idle_seconds"] >= 2, row
        assert row["rss_before_kib"] > 0 and row["rss_after_idle_kib"] > 0, row
        assert row["idle_cpu_percent"] >= 0, row
    # The table names both servers, one line each.
    assert "chat worker (gevent)" in done.stdout and "Node socket.io 4.8 peer" in done.stdout
