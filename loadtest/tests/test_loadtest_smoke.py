"""Smoke runs of the load-test suite, so it cannot rot: real workers on a private redis-server,
a few users for a few seconds through the make targets, and what they must report."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from chatload import tails
from chatload.stack import NodePeer
from testkit.processes import REPO_ROOT, require_program

pytestmark = pytest.mark.e2e

# Ramp-up, 3 s of sending, 3 s of grace, locust start/stop and the plot fit well inside this.
RUN_TIMEOUT_SECONDS = 120
REPORT_FILES = (
    "locust_stats.csv",
    "locust_stats_history.csv",
    "locust_failures.csv",
    "report.html",
    "locust_chat_summary.json",
    "locust_fanout_histogram.csv",
    "locust_fanout.png",
)


@pytest.fixture
def two_workers(redis_server, start_worker, tmp_path) -> str:
    """Two chat workers on one private Redis and one database: same-node and cross-node."""
    env = {
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}",
        "RATE_LIMIT_MESSAGES": "100000",
    }
    workers = [start_worker(**env, NODE_ID=f"smoke-{i}") for i in (1, 2)]
    return ",".join(w.url for w in workers)


def run_make(
    target: str, results: Path, targets: str, env: dict[str, str] | None = None, **params: str
) -> dict:
    require_program("make")
    settings = {
        "USERS": "6",
        "SPAWN_RATE": "6",
        "DURATION": "3",
        "GRACE": "3",
        "SENDERS": "2",
        "RATE": "4",
        **params,
    }
    argv = [
        "make",
        "--no-print-directory",
        target,
        f"RESULTS={results}",
        f"TARGETS={targets}",
        *(f"{k}={v}" for k, v in settings.items()),
    ]
    done = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        env={**os.environ, **(env or {})},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "=== chat fan-out" in done.stdout and "lost 0   duplicated 0" in done.stdout, output
    for name in REPORT_FILES:
        assert (results / name).stat().st_size > 0, f"{name} missing or empty"
    return json.loads((results / "locust_chat_summary.json").read_text())


def assert_every_member_got_every_message(summary: dict, members_per_room: int) -> None:
    acked = summary["ack_ms"]["count"]
    fanout = summary["fanout_ms"]
    assert acked > 0
    assert summary["lost"] == 0 and summary["duplicated"] == 0
    # Each acked message is owed once to every member of its room, the sender included.
    assert summary["owed"] == summary["delivered"] == acked * members_per_room
    assert fanout["all"]["count"] == summary["delivered"]
    assert fanout["same-node"]["count"] > 0 and fanout["cross-node"]["count"] > 0
    assert summary["connect_failures"] == 0 and summary["ack_failures"] == 0
    # The send window the campaign divides server CPU by: senders started, then stopped, and
    # the last delivery came after the start.
    assert summary["sending_started_at"] < summary["sending_stopped_at"]
    assert summary["last_delivery_at"] > summary["sending_started_at"]


def test_one_locust_process_one_room_of_everybody(two_workers, tmp_path):
    summary = run_make("loadtest", tmp_path / "results", two_workers)
    assert summary["rooms"] == 1
    assert_every_member_got_every_message(summary, members_per_room=6)


def test_distributed_locust_rooms_of_three_and_some_long_polling(two_workers, tmp_path):
    """A master and two locust workers: ledgers from both are merged by the master; with
    CHATLOAD_DELIVERY_LOG each worker also records every delivery and ack for chatload.tails."""
    results = tmp_path / "results"
    deliveries = tmp_path / "deliveries"
    summary = run_make(
        "loadtest-dist",
        results,
        two_workers,
        env={tails.ENV: str(deliveries)},
        WORKERS="2",
        ROOM_SIZE="3",
        POLLING="0.34",
    )
    assert summary["rooms"] == 2
    assert_every_member_got_every_message(summary, members_per_room=3)
    records = tails.read(deliveries)
    assert len(records) == 2  # one file per process that runs users, none from the master
    split = tails.summarize(records)
    assert split["deliveries"] == summary["delivered"]
    assert sum(len(r["acks"]) for r in records) == summary["ack_ms"]["count"]
    assert split["messages"] == summary["ack_ms"]["count"]
    stats = (results / "locust_stats.csv").read_text()
    assert "connect,polling," in stats and "connect,websocket," in stats


def test_dm_pairs_each_talk_in_their_direct_message(two_workers, tmp_path):
    """--chat-dms: users 2k and 2k+1 open their DM (POST /api/dms) and talk there."""
    summary = run_make(
        "loadtest", tmp_path / "results", two_workers, SENDERS="3", LOCUST_ARGS="--chat-dms"
    )
    assert summary["rooms"] == 3
    assert_every_member_got_every_message(summary, members_per_room=2)


def test_the_node_peer_speaks_enough_of_the_contract(redis_server, tmp_path):
    require_program("node")
    peers = [NodePeer(tmp_path, redis_server.url, f"peer-{i}") for i in (1, 2)]
    try:
        summary = run_make("loadtest", tmp_path / "results", ",".join(p.url for p in peers))
    finally:
        for p in peers:
            p.stop()
    assert_every_member_got_every_message(summary, members_per_room=6)
