"""The launcher behind `make cluster`, `make cluster-up` and `make cluster-down`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

import testkit.cluster as launcher
from testkit.clients import ChatClient, register
from testkit.cluster import Cluster, ClusterError
from testkit.processes import free_port_block, port_is_free

# `make cluster`, `cluster-up`, `cluster-down` run it so.
LAUNCHER = [sys.executable, "-m", "testkit.cluster"]


def run_launcher(
    command: str,
    run_dir: Path,
    http_port: int,
    workers: int = 2,
    timeout: float = 120,
    redis: str = "",
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "REDIS": redis,
        "WORKERS": str(workers),
        "HTTP_PORT": str(http_port),
        "CLUSTER_DIR": str(run_dir),
        "REDIS_URL": "",
        "DATABASE_URL": "",
    }
    return subprocess.run(
        [*LAUNCHER, command],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        cwd=launcher.REPO_ROOT,
    )


def recorded_processes(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / launcher.STATE_FILE).read_text())["processes"]


def running(entry: dict) -> bool:
    return launcher._pid_runs(entry)


def test_up_returns_when_everything_answers_and_down_stops_every_process(tmp_path):
    run_dir, port = tmp_path / "cluster", free_port_block(3)

    up = run_launcher("up", run_dir, port)
    assert up.returncode == 0, up.stderr
    assert f"ready at http://127.0.0.1:{port}" in up.stdout
    processes = recorded_processes(run_dir)
    assert [p["name"] for p in processes] == ["redis", "worker-1", "worker-2", "nginx"]
    try:
        # Ready means ready: nginx and every worker (on HTTP_PORT+1, +2) answer at once.
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        for i in (1, 2):
            r = requests.get(f"http://127.0.0.1:{port + i}/healthz", timeout=5)
            assert r.status_code == 200 and r.json()["node"] == f"worker-{i}"
        # One SQLite file for all, in WAL mode so readers never wait for the writer.
        with sqlite3.connect(run_dir / "data" / "chat.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # A second `up` on the same run directory refuses instead of starting a twin.
        again = run_launcher("up", run_dir, port)
        assert again.returncode == 1 and "already runs" in again.stdout
        status = run_launcher("status", run_dir, port)
        assert "worker-2" in status.stdout and "nginx" in status.stdout
    finally:
        down = run_launcher("down", run_dir, port)
    assert down.returncode == 0, down.stderr
    assert not any(running(p) for p in processes)
    assert all(port_is_free(port + i) for i in range(3))
    assert "no cluster runs" in run_launcher("down", run_dir, port).stdout


def test_up_with_redis_cluster_starts_three_primaries_under_the_workers(tmp_path):
    run_dir, port = tmp_path / "cluster", free_port_block(4)
    # Up, down and up again in the same run directory: the second cluster is created anew
    # (the first one's node tables named other ports and node ids).
    up = run_launcher("up", run_dir, port, workers=3, redis="cluster")
    assert up.returncode == 0, up.stderr
    down = run_launcher("down", run_dir, port)
    assert down.returncode == 0, down.stderr
    up = run_launcher("up", run_dir, port, workers=3, redis="cluster")
    assert up.returncode == 0, up.stderr
    processes = recorded_processes(run_dir)
    try:
        names = [p["name"] for p in processes]
        assert names == [f"redis-cluster-{i}" for i in (1, 2, 3)] + [
            "worker-1",
            "worker-2",
            "worker-3",
            "nginx",
        ]
        state = json.loads((run_dir / launcher.STATE_FILE).read_text())
        # Every node requires the run directory's Redis password, which the workers' REDIS_URL
        # carries (the state file shows it redacted): the delivery below goes through them.
        password = (run_dir / "redis_password").read_text().strip()
        assert state["redis_url"].startswith("redis+cluster://:***@127.0.0.1:")
        node_ports = [int(a.rsplit(":", 1)[1]) for a in state["redis_url"].split(",")]
        assert len(node_ports) == 3
        for node_port in node_ports:
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=node_port).ping()
            assert redis.Redis(port=node_port, password=password).ping()
        workers = [f"http://127.0.0.1:{port + i}" for i in (1, 2, 3)]
        # A room's member on worker 1, its messages posted on worker 2: only worker 1's
        # listener receives them.
        _, token = register(workers[0])
        member = ChatClient(workers[0], token)
        room = f"probe-{port}"
        assert member.join(room)["ok"] is True

        def room_emits(url: str) -> float:
            for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
                if line.startswith('chat_mq_received_total{kind="room"}'):
                    return float(line.split()[1])
            return 0.0

        before = [room_emits(w) for w in workers]
        for n in range(3):
            r = requests.post(
                f"{workers[1]}/api/rooms/{room}/messages",
                json={"text": f"#{n}"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert r.status_code == 201, r.text
        member.wait_for("message", lambda m: m["text"] == "#2")
        member.close()
        assert [room_emits(w) - b for w, b in zip(workers, before, strict=True)] == [3, 0, 0]
    finally:
        down = run_launcher("down", run_dir, port)
    assert down.returncode == 0, down.stderr
    assert not any(running(p) for p in processes)


def test_foreground_cluster_stops_everything_it_started_on_sigterm(tmp_path):
    run_dir, port = tmp_path / "cluster", free_port_block(3)
    env = {
        **os.environ,
        "WORKERS": "2",
        "HTTP_PORT": str(port),
        "CLUSTER_DIR": str(run_dir),
        "REDIS_URL": "",
        "DATABASE_URL": "",
    }
    proc = subprocess.Popen(
        [*LAUNCHER, "run"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=launcher.REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "launcher exited early:\n" + "".join(lines)
            lines.append(line)
            if "ready at" in line:
                break
        processes = recorded_processes(run_dir)
        assert len(processes) == 4 and all(running(p) for p in processes)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200

        proc.send_signal(signal.SIGTERM)  # what Ctrl-C does too (SIGINT), as a supervisor would
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not any(running(p) for p in processes)
    assert not (run_dir / launcher.STATE_FILE).exists()


@pytest.mark.parametrize("program", ["nginx", "redis-server"])
def test_a_missing_program_is_named_with_the_way_to_install_it(
    tmp_path, monkeypatch, capsys, program
):
    real_which = shutil.which
    monkeypatch.setattr(
        shutil,
        "which",
        lambda name, **kw: None if name == program else real_which(name, **kw),
    )
    monkeypatch.setenv("HTTP_PORT", str(free_port_block(4)))
    monkeypatch.delenv("REDIS_URL", raising=False)

    assert launcher.main(["up", "--dir", str(tmp_path / "cluster")]) == 1

    err = capsys.readouterr().err
    assert f"{program} is not installed" in err and "make system-deps" in err


def test_a_busy_port_is_reported_before_anything_starts(tmp_path):
    port = free_port_block(4)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port + 2))  # where worker 2 would listen
        busy.listen()
        cluster = Cluster(tmp_path / "cluster", workers=3, http_port=port)
        with pytest.raises(ClusterError, match=f"port\\(s\\) {port + 2} already in use"):
            cluster.start()
    assert cluster.processes() == []


def test_workers_share_one_postgresql_database_and_one_secret_key(start_cluster, postgres_url):
    cluster = start_cluster(workers=2, database_url=postgres_url)
    worker_1, worker_2 = cluster.workers
    user, token = register(worker_1.url)  # account created through worker 1 ...
    client = ChatClient(worker_2.url, token)  # ... token accepted by worker 2
    try:
        assert client.wait_for("session") == {"user": user, "node": worker_2.node_id}
        assert client.send("general", "stored in PostgreSQL")["ok"] is True
    finally:
        client.close()
    r = requests.get(
        f"{worker_1.url}/api/rooms/general/messages",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert [m["text"] for m in r.json()["messages"]][-1:] == ["stored in PostgreSQL"]
