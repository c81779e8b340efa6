"""The message queue's figures of a campaign run: what each worker's listener received, and CPU.

Per worker (a chat worker of testkit.cluster's Cluster), over the send window:
- `room_received`: its `chat_mq_received_total{kind="room"}` after the last delivery minus
  before the senders' start, both read in a quiet moment (the run's --chat-settle before, the
  grace period after), so the difference holds the send window's room emits and nothing else;
- `room_expected`: the messages sent to rooms it has a joined member in (the load test's
  `room_emits_by_node`, from each member's `session` node). A listener that hears exactly
  the rooms it has members in gets `room_received == room_expected`;
- `control_received`, `subscriptions` (chat_mq_subscriptions at the end);
- its CPU in the send window, and that per message sent (all rooms) and per delivery.
Per Redis node (one redis-server, or each node of a Redis Cluster): its CPU in the send window
(psutil on its PID) and that per message sent.

CPU is sampled every SAMPLE_INTERVAL_S and interpolated at the window's bounds
(chatload.sendwindow); the metrics are read every METRICS_INTERVAL_S (that costs each worker a
/metrics request a second, in every scenario alike).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil
import requests

from . import sendwindow

SAMPLE_INTERVAL_S = 0.25
METRICS_INTERVAL_S = 1.0
# The snapshot after the run is taken at least this long after the last delivery (the last
# emits of the window are in the listeners' counters by then).
AFTER_SETTLE_S = 1.0


def parse_metrics(text: str) -> dict[str, float]:
    """chat_mq_received_total{kind} and chat_mq_subscriptions from a /metrics page."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith('chat_mq_received_total{kind="room"}'):
            out["room"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith('chat_mq_received_total{kind="control"}'):
            out["control"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("chat_mq_subscriptions "):
            out["subscriptions"] = float(line.rsplit(" ", 1)[1])
    return out


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return float("nan")
    return times.user + times.system


class Probe:
    """Samples the workers' and Redis nodes' CPU and the workers' mq metrics in a thread."""

    def __init__(self, cluster: Any, redis_pids: list[int]) -> None:
        self.workers = [(w.node_id, w.url, psutil.Process(w.pid)) for w in cluster.workers]
        self.redis = [psutil.Process(pid) for pid in redis_pids]
        self.worker_cpu: dict[str, list[sendwindow.Sample]] = {n: [] for n, _, _ in self.workers}
        self.redis_cpu: list[list[sendwindow.Sample]] = [[] for _ in self.redis]
        # (taken from, taken until, {node: parsed metrics}); a node missing = not read.
        self.snapshots: list[tuple[float, float, dict[str, dict[str, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mq-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        next_metrics = 0.0
        while not self._stop.is_set():
            now = time.time()
            for node, _, proc in self.workers:
                self.worker_cpu[node].append((now, _cpu(proc)))
            for samples, proc in zip(self.redis_cpu, self.redis, strict=True):
                samples.append((now, _cpu(proc)))
            if now >= next_metrics:
                next_metrics = now + METRICS_INTERVAL_S
                self._snapshot()
            self._stop.wait(SAMPLE_INTERVAL_S)

    def _snapshot(self) -> None:
        began = time.time()
        read: dict[str, dict[str, float]] = {}
        for node, url, _ in self.workers:
            try:
                read[node] = parse_metrics(requests.get(url + "/metrics", timeout=2).text)
            except requests.RequestException:
                continue
        self.snapshots.append((began, time.time(), read))

    def figures(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The run's per-worker and per-Redis-node figures (see the module's docstring)."""
        return figures(summary, self.worker_cpu, self.redis_cpu, self.snapshots)


Snapshot = tuple[float, float, dict[str, dict[str, float]]]


def figures(
    summary: dict[str, Any],
    worker_cpu: dict[str, list[sendwindow.Sample]],
    redis_cpu: list[list[sendwindow.Sample]],
    snapshots: list[Snapshot],
) -> dict[str, Any]:
    """Per worker (keyed by node id) and per Redis node, from the samples of one run.

    Returns {window_s, messages, deliveries, workers_cpu_s, workers_us_per_message,
    workers_us_per_delivery, all_exact, workers: {node: {...}}, redis_nodes: [{...}]}, or
    {error} when the run had no send window.
    """
    bounds = sendwindow.window(summary)
    if bounds is None:
        return {"error": "no send window (nothing was sent?)"}
    start, end = bounds
    last = summary.get("last_delivery_at") or end
    before = [s for s in snapshots if s[1] < start]
    after = [
        s
        for s in snapshots
        if s[0] > last + AFTER_SETTLE_S and s[1] < (summary.get("grace_ended_at") or 1e18)
    ]
    messages = int(summary.get("messages") or 0)
    delivered = int(summary.get("delivered") or 0)
    expected = summary.get("room_emits_by_node") or {}
    workers: dict[str, Any] = {}
    for node in worker_cpu:
        cpu = sendwindow.cpu_between(worker_cpu[node], start, end)
        entry: dict[str, Any] = {
            "cpu_s": None if cpu is None else round(cpu, 3),
            "us_per_message": _per(cpu, messages),
            "room_expected": expected.get(node, {}).get("room_emits", 0),
            # With every failed join's socket counted in its room (see ledger.join_failed).
            "room_expected_max": expected.get(node, {}).get("room_emits_max", 0),
            "rooms_with_member": expected.get(node, {}).get("rooms", 0),
        }
        b = before[-1][2].get(node) if before else None
        a = after[0][2].get(node) if after else None
        if b is not None and a is not None:
            entry["room_received"] = int(a.get("room", 0) - b.get("room", 0))
            entry["control_received"] = int(a.get("control", 0) - b.get("control", 0))
            entry["subscriptions"] = int(a.get("subscriptions", 0))
            entry["exact"] = entry["room_received"] == entry["room_expected"]
            entry["within_failed_joins"] = (
                entry["room_expected"] <= entry["room_received"] <= entry["room_expected_max"]
            )
            # Quiet before the start: the snapshot before it read the same room count.
            if len(before) >= 2 and node in before[-2][2]:
                entry["quiet_before"] = before[-2][2][node].get("room") == b.get("room")
        workers[node] = entry
    redis_nodes = []
    for samples in redis_cpu:
        cpu = sendwindow.cpu_between(samples, start, end)
        redis_nodes.append(
            {
                "cpu_s": None if cpu is None else round(cpu, 3),
                "us_per_message": _per(cpu, messages),
            }
        )
    cpus = [w["cpu_s"] for w in workers.values() if w["cpu_s"] is not None]
    total = sum(cpus) if len(cpus) == len(workers) else None
    return {
        "window_s": round(end - start, 2),
        "messages": messages,
        "deliveries": delivered,
        "workers_cpu_s": None if total is None else round(total, 3),
        "workers_us_per_message": _per(total, messages),
        "workers_us_per_delivery": _per(total, delivered),
        "all_exact": bool(workers) and all(w.get("exact") for w in workers.values()),
        "workers": workers,
        "redis_nodes": redis_nodes,
    }


def _per(cpu: float | None, count: int) -> float | None:
    return None if cpu is None or not count else round(cpu / count * 1e6, 1)


def table(name: str, redis_mode: str, row: dict[str, Any]) -> str:
    """A run's mq figures as markdown: one line per worker, then the Redis nodes."""
    f = row["mq"]
    if "error" in f:
        return f"**{name}** ({redis_mode} Redis): {f['error']}"
    lines = [
        f"**{name}** ({redis_mode} Redis; load {row['load_before']}→{row['load_after']}): "
        f"{f['messages']} messages, {f['deliveries']} deliveries in {f['window_s']} s; "
        f"workers {f['workers_us_per_message']} µs CPU/message, "
        f"{f['workers_us_per_delivery']} µs CPU/delivery; "
        f"room emits received = expected on every worker: {f['all_exact']}; "
        f"join failures {row['summary'].get('join_failures', 0)}",
        "",
        "| worker | rooms with a member | room emits expected (with failed joins) "
        "| room emits received | exact "
        "| control received | subscriptions | CPU s | µs CPU/message |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for node, w in f["workers"].items():
        lines.append(
            f"| {node} | {w['rooms_with_member']} "
            f"| {w['room_expected']} ({w.get('room_expected_max', '-')}) "
            f"| {w.get('room_received', '-')} | {w.get('exact', '-')} "
            f"| {w.get('control_received', '-')} | {w.get('subscriptions', '-')} "
            f"| {w['cpu_s']} | {w['us_per_message']} |"
        )
    nodes = ", ".join(
        f"node {i + 1}: {n['cpu_s']} s ({n['us_per_message']} µs/message)"
        for i, n in enumerate(f["redis_nodes"])
    )
    lines += ["", f"Redis CPU in the send window: {nodes}"]
    return "\n".join(lines)
