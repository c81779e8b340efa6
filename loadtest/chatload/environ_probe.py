"""Memory per idle connection on one chat worker, by tracemalloc (investigation only).

    python -m chatload.environ_probe --clients 2000 [--transport polling] [--out DIR]

Starts one gevent worker under `chatload.density_probe` (tracemalloc on, 1 frame), warms it
up with a few connections, dumps (SIGUSR2), connects N idle clients (the Node socket.io
client, as `chatload.density` does; WebSocket unless --transport polling), waits, dumps
again, and prints per connection: the traced memory difference, its largest allocation
sites, the RSS difference, and the deep size of one socket's kept environ (density_probe's
`one_environ_deep_bytes`: the dict and the dicts, lists, tuples and strings it holds).
Take it under `flock /work/wt/bench.lock`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from testkit.processes import REPO_ROOT, HttpServer, free_port, rss_kib, worker_environment

from .density import (
    SETTLE_SECONDS,
    USERS,
    WARM_UP_CONNECTIONS,
    ClientGroup,
    loadavg,
    raise_fd_limit,
    register_chat_users,
)


def _dump(worker: HttpServer, out: str, n: int, timeout: float = 120) -> dict:
    """Ask the probe for its n-th dump; its JSON report once the snapshot is written."""
    worker.signal(signal.SIGUSR2)
    report, snapshot = Path(f"{out}-{n}.json"), Path(f"{out}-{n}.tracemalloc")
    deadline = time.monotonic() + timeout
    while not (report.exists() and snapshot.exists()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no dump {n} from the probe")
        time.sleep(0.5)
    time.sleep(1)  # the snapshot file is written after the report
    return json.loads(report.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=2000)
    p.add_argument("--transport", choices=["websocket", "polling"], default="websocket")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    raise_fd_limit(args.clients + 1000)
    workdir = args.out or Path(tempfile.mkdtemp(prefix="environ-probe-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = str(workdir / "probe")
    port = free_port()
    env = worker_environment(
        {
            "PORT": str(port),
            "NODE_ID": "environ-probe",
            "CHAT_DATA_DIR": str(workdir),
            "ASYNC_MODE": "gevent",
            "DATABASE_URL": f"sqlite:///{workdir / 'chat.db'}",
            "REDIS_URL": "",
            "MAX_CONNECTIONS_PER_USER": str(args.clients + WARM_UP_CONNECTIONS),
            "LOG_LEVEL": "WARNING",
            "DENSITY_TRACEMALLOC": "1",
            "DENSITY_PROBE_OUT": out,
        }
    )
    worker = HttpServer(
        "environ-probe",
        [sys.executable, "-m", "chatload.density_probe"],
        workdir / "worker.log",
        env=env,
        cwd=REPO_ROOT / "loadtest",
    )
    worker.port = port
    worker.start()
    groups: list[ClientGroup] = []
    try:
        worker.wait_healthy()
        tokens = register_chat_users(worker.url, USERS, f"eprobe{os.getpid()}")
        tokens_file = workdir / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        warm = ClientGroup(worker.url, tokens_file, WARM_UP_CONNECTIONS, workdir, "warm")
        warm.wait_connected(60)
        warm.stop()
        time.sleep(SETTLE_SECONDS)
        print(f"load before: {loadavg()}", flush=True)
        before = _dump(worker, out, 1)
        rss_before = rss_kib(worker.pid)
        group = ClientGroup(worker.url, tokens_file, args.clients, workdir, "idle", args.transport)
        groups.append(group)
        done = group.wait_connected(60 + args.clients / 20)
        connected = sum(d["ok"] for d in done)
        time.sleep(SETTLE_SECONDS * 2)
        after = _dump(worker, out, 2)
        rss_after = rss_kib(worker.pid)
        print(f"load after: {loadavg()}", flush=True)
    finally:
        for g in groups:
            g.stop()
        worker.stop()
    s1 = tracemalloc.Snapshot.load(f"{out}-1.tracemalloc")
    s2 = tracemalloc.Snapshot.load(f"{out}-2.tracemalloc")
    stats = s2.compare_to(s1, "lineno")
    traced = sum(s.size_diff for s in stats)
    print(f"connected {connected} (sockets {before['sockets']} -> {after['sockets']})")
    print(f"traced per connection: {traced / connected / 1024:.2f} KiB")
    print(f"RSS per connection: {(rss_after - rss_before) / connected:.2f} KiB")
    print(f"one kept environ, deep: {after['one_environ_deep_bytes']} bytes")
    objects = after["objects_total"] - before["objects_total"]
    print(f"GC objects per connection: {objects / connected:.1f}")
    print("largest sites, bytes per connection:")
    for s in stats[:25]:
        frame = s.traceback[0]
        print(f"  {s.size_diff / connected:8.1f}  {frame.filename}:{frame.lineno}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
