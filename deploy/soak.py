"""Soak: a bounded run of steady chat through nginx, watching the workers' memory and fds.

    make soak                                  # 10 minutes, 300 clients, 3 workers
    make soak SOAK_SECONDS=150 SOAK_CLIENTS=200

It starts its own cluster (testkit.cluster, the launcher of `make cluster`: private
redis-server, SOAK_WORKERS workers, nginx, SQLite in WAL mode unless DATABASE_URL is given)
on free ports, connects
SOAK_CLIENTS real python-socketio clients through nginx (testkit RoomFollower: reconnect,
catch up by seq), spread over SOAK_ROOMS rooms, and has them send SOAK_RATE messages a
second in total for SOAK_SECONDS. Every SOAK_SAMPLE_SECONDS it records each worker's
resident memory and open file descriptors. At the end it checks that every client holds
every message of its room, and reports per worker RSS and fds at start and end with the
growth rate over the second half of the run (a leak shows as steady growth), plus delivery
latency. Results go to run/soak/<timestamp>/result.json. Exit status 1 on a lost message,
a dead worker or a failed send. Nothing here runs in `make test`.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from testkit.clients import RoomFollower, register
from testkit.cluster import Cluster
from testkit.processes import HARNESS_LIMITS, REPO_ROOT, open_fds, rss_kib


def setting(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


SECONDS = setting("SOAK_SECONDS", 600)
CLIENTS = setting("SOAK_CLIENTS", 300)
ROOMS = setting("SOAK_ROOMS", 10)
RATE = setting("SOAK_RATE", 20)  # messages per second, all clients together
WORKERS = setting("SOAK_WORKERS", 3)
SAMPLE_SECONDS = setting("SOAK_SAMPLE_SECONDS", 30)
WARMUP_SECONDS = 15  # sockets, caches and pools settle before the start figures are taken
CONNECT_THREADS = 8


class Soak:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.cluster = Cluster(
            run_dir / "cluster",
            workers=WORKERS,
            http_port=None,
            database_url=os.environ.get("DATABASE_URL"),
            env=HARNESS_LIMITS,
        )
        self.followers: list[RoomFollower] = []
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.samples: list[dict] = []
        self._lock = threading.Lock()

    # --- clients ---

    def connect(self) -> None:
        rooms = [f"soak-{i}" for i in range(ROOMS)]

        def one(i: int) -> RoomFollower:
            _, token = register(self.cluster.url)
            follower = RoomFollower(self.cluster.url, token, rooms[i % ROOMS], name=f"c{i}")
            follower.on_live_message = self._timed
            return follower

        with ThreadPoolExecutor(CONNECT_THREADS) as pool:
            self.followers = list(pool.map(one, range(CLIENTS)))

    def _timed(self, message: dict) -> None:
        sent = float(message["text"].split(" ", 2)[1])
        with self._lock:
            self.latencies.append(time.time() - sent)

    def chat(self, seconds: float, stop: threading.Event) -> int:
        """Send RATE messages a second from random clients; returns how many were acked."""
        sent = 0
        deadline = time.monotonic() + seconds
        next_at = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            futures = []
            while time.monotonic() < deadline and not stop.is_set():
                sender = random.choice(self.followers)
                futures.append(
                    pool.submit(sender.send, f"soak {time.time():.6f} {sent}", deadline_seconds=30)
                )
                sent += 1
                next_at += 1 / RATE
                time.sleep(max(0.0, next_at - time.monotonic()))
            acked = 0
            for f in futures:
                try:
                    f.result(timeout=60)
                    acked += 1
                except Exception as exc:
                    self.failures.append(f"send: {exc}")
        return acked

    # --- figures ---

    def sample(self, label: str) -> dict:
        workers = {}
        for w in self.cluster.workers:
            alive = w.alive()
            workers[w.node_id] = {
                "alive": alive,
                "rss_kb": rss_kib(w.pid) if alive else None,
                "open_fds": open_fds(w.pid) if alive else None,
            }
        entry = {"label": label, "t": time.monotonic(), "workers": workers}
        self.samples.append(entry)
        line = "  ".join(
            f"{n}: {v['rss_kb'] // 1024 if v['rss_kb'] else '-'} MB {v['open_fds']} fds"
            for n, v in workers.items()
        )
        print(f"[{label}] {line}", flush=True)
        return entry

    def growth_per_minute(self, node: str, key: str) -> float:
        """Least-squares slope over the second half of the samples, per minute."""
        points = [
            (s["t"], s["workers"][node][key])
            for s in self.samples
            if s["workers"][node][key] is not None
        ]
        points = points[len(points) // 2 :]
        if len(points) < 2:
            return 0.0
        mean_t = sum(t for t, _ in points) / len(points)
        mean_v = sum(v for _, v in points) / len(points)
        var = sum((t - mean_t) ** 2 for t, _ in points)
        if var == 0:
            return 0.0
        slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / var
        return slope * 60


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> int:
    run_dir = REPO_ROOT / "run" / "soak" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    soak = Soak(run_dir)
    print(
        f"soak: {SECONDS} s, {CLIENTS} clients in {ROOMS} rooms, {RATE} msgs/s, "
        f"{WORKERS} workers; run dir {run_dir}",
        flush=True,
    )
    soak.cluster.start()
    stop = threading.Event()
    try:
        print(f"cluster at {soak.cluster.url}; connecting {CLIENTS} clients ...", flush=True)
        started = time.monotonic()
        soak.connect()
        print(f"connected in {time.monotonic() - started:.1f} s", flush=True)
        soak.chat(WARMUP_SECONDS, stop)
        soak.sample("start")
        acked = 0
        chat_started = time.monotonic()
        while time.monotonic() - chat_started < SECONDS:
            acked += soak.chat(
                min(SAMPLE_SECONDS, SECONDS - (time.monotonic() - chat_started)), stop
            )
            entry = soak.sample(f"{time.monotonic() - chat_started:.0f} s")
            if not all(v["alive"] for v in entry["workers"].values()):
                soak.failures.append("a worker died")
                break
        # Every client must end with every message of its room.
        last = {}
        for f in soak.followers:
            for m in f.acked:
                last[f.room] = max(last.get(f.room, 0), m["seq"])
        lost = 0
        for f in soak.followers:
            try:
                f.wait_for_seq(last.get(f.room, 0), timeout=30)
            except TimeoutError as exc:
                lost += 1
                soak.failures.append(str(exc)[:200])
        end = soak.sample("end")
        start = soak.samples[[s["label"] for s in soak.samples].index("start")]
        report = {
            "settings": {
                "seconds": SECONDS,
                "clients": CLIENTS,
                "rooms": ROOMS,
                "rate": RATE,
                "workers": WORKERS,
            },
            "messages_acked": acked,
            "deliveries_timed": len(soak.latencies),
            "delivery_ms": {
                "p50": percentile(soak.latencies, 0.5) * 1000,
                "p99": percentile(soak.latencies, 0.99) * 1000,
                "max": percentile(soak.latencies, 1.0) * 1000,
            },
            "clients_missing_messages": lost,
            "wire_duplicates": sum(f.wire_duplicates for f in soak.followers),
            "reconnects": sum(max(0, len(f.connected_at) - 1) for f in soak.followers),
            "failures": soak.failures[:20],
            "workers": {},
            "samples": soak.samples,
        }
        print(
            f"\n{'worker':10} {'RSS MB start':>12} {'end':>6} {'MB/min (2nd half)':>18} "
            f"{'fds start':>10} {'end':>5} {'fds/min':>8}"
        )
        for node in end["workers"]:
            s, e = start["workers"][node], end["workers"][node]
            rss_rate = soak.growth_per_minute(node, "rss_kb") / 1024
            fd_rate = soak.growth_per_minute(node, "open_fds")
            report["workers"][node] = {
                "start": s,
                "end": e,
                "rss_mb_per_min": rss_rate,
                "fds_per_min": fd_rate,
            }
            print(
                f"{node:10} {s['rss_kb'] / 1024:12.1f} {(e['rss_kb'] or 0) / 1024:6.1f} "
                f"{rss_rate:18.2f} {s['open_fds']:10} {e['open_fds']:5} {fd_rate:8.2f}"
            )
        d = report["delivery_ms"]
        print(
            f"\n{acked} messages acked ({acked / SECONDS:.1f}/s), {len(soak.latencies)} live "
            f"deliveries timed: p50 {d['p50']:.0f} ms, p99 {d['p99']:.0f} ms, max "
            f"{d['max']:.0f} ms; clients missing messages: {lost}; reconnects: "
            f"{report['reconnects']}; failures: {len(soak.failures)}"
        )
        (run_dir / "result.json").write_text(json.dumps(report, indent=2))
        print(f"result: {run_dir / 'result.json'}")
        return 1 if soak.failures or lost else 0
    finally:
        stop.set()
        for f in soak.followers:
            f.close()
        soak.cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
