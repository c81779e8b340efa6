"""One campaign run and its figures: the locust command, CPU by role sampled while it runs,
the load average, the message handler's histogram, the send window's marginal cost.

CPU figures are user + system seconds from psutil (testkit.processes.cpu_seconds).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import requests

from testkit.processes import REPO_ROOT, cpu_seconds, free_port

from .. import mq, sendwindow, tails
from .scenarios import LOADTEST_DIR, Scenario

if TYPE_CHECKING:
    from .setup import Setup

# The users the campaign registers once and reuses across set-ups (chatload.accounts).
USER_PREFIX = "bench"
# Server CPU is sampled this often while locust runs, for the send window's CPU (a tick is
# 10 ms, so a finer interval would only add noise).
SAMPLE_INTERVAL_S = 0.25


def load_average() -> float:
    return os.getloadavg()[0]


def pytest_processes() -> int:
    """How many processes run pytest now (another team's tests skew a run: it is recorded)."""
    count = 0
    for proc in psutil.process_iter(["cmdline"]):
        if any("pytest" in part for part in proc.info["cmdline"] or ()):
            count += 1
    return count


def wait_until_quiet(threshold: float, max_wait: float) -> tuple[float, float]:
    """Wait (at most max_wait s) for the 1-minute load average to fall below threshold;
    returns (load average, seconds waited)."""
    started = time.monotonic()
    while load_average() >= threshold and time.monotonic() - started < max_wait:
        time.sleep(5)
    return load_average(), time.monotonic() - started


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's reaped children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def handler_histogram(worker_urls: list[str]) -> dict[str, float]:
    """The workers' `message` handler histogram (cumulative), summed: bucket -> count
    (bucket: the `le` bound, or count / sum / created); a worker that does not answer adds
    nothing."""
    total: dict[str, float] = {}
    for url in worker_urls:
        try:
            text = requests.get(url + "/metrics", timeout=5).text
        except requests.RequestException:
            continue
        for line in text.splitlines():
            if line.startswith("chat_handler_seconds") and 'handler="message"' in line:
                name, value = line.rsplit(" ", 1)
                key = (
                    name.split("le=")[1].split('"')[1]
                    if "le=" in name
                    else name.split("{")[0].rsplit("_", 1)[1]
                )
                total[key] = total.get(key, 0.0) + float(value)
    return total


def handler_summary(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """The `message` handler's time in this run (store + publish, ack not included): mean, and
    p50/p99 as the upper bound of the histogram bucket they fall in."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    count = delta.get("count", 0.0)
    if not count:
        return {}
    bounds = sorted(
        (float(k), v)
        for k, v in delta.items()
        if k not in ("count", "sum", "created") and k != "+Inf"
    )

    def quantile(q: float) -> float | None:
        for bound, cumulative in bounds:
            if cumulative >= q * count:
                return bound * 1000
        return None

    return {
        "count": int(count),
        "mean_ms": round(delta["sum"] / count * 1000, 2),
        "p50_le_ms": quantile(0.5),
        "p99_le_ms": quantile(0.99),
    }


def locust_command(sc: Scenario, setup: Setup, out: Path, tokens: Path | None) -> list[str]:
    """The headless locust run of `sc` against `setup`, its CSV and HTML into `out`."""
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOADTEST_DIR / "locustfile.py"),
        "--headless",
        "--only-summary",
        "--host",
        setup.host,
        "-u",
        str(sc.users),
        "-r",
        str(sc.spawn_rate),
        "--chat-duration",
        str(sc.duration),
        "--chat-grace",
        str(sc.grace),
        "--chat-senders",
        str(sc.senders),
        "--chat-rate",
        str(sc.rate),
        "--chat-message-size",
        str(sc.message_size),
        "--csv",
        str(out / "locust"),
        "--csv-full-history",
        "--html",
        str(out / "report.html"),
    ]
    if sc.room_sizes:
        cmd += ["--chat-room-sizes", sc.room_sizes]
    if sc.settle:
        cmd += ["--chat-settle", str(sc.settle)]
    targets = setup.direct_targets if sc.direct else setup.targets
    if targets:
        cmd += ["--chat-targets", targets]
    if sc.locust_processes > 1:
        # A port of its own: locust's default 5557 may still be held by the previous run's
        # master (or by somebody else's locust on this machine).
        port = str(free_port())
        cmd += [
            "--processes",
            str(sc.locust_processes),
            "--master-bind-port",
            port,
            "--master-port",
            port,
        ]
    if tokens is not None:
        cmd += ["--chat-user-prefix", USER_PREFIX, "--chat-tokens", str(tokens)]
    return cmd


def run_one(
    sc: Scenario, setup: Setup, out: Path, tokens: Path | None, quiet_load: float, quiet_wait: float
) -> dict[str, Any]:
    """Run `sc` once (bounded) and return its row (also written to out/row.json)."""
    out.mkdir(parents=True, exist_ok=True)
    load_before, waited = wait_until_quiet(quiet_load, quiet_wait)
    pytests = pytest_processes()
    cmd = locust_command(sc, setup, out, tokens)
    (out / "command.txt").write_text(" ".join(cmd) + "\n")
    ramp = sc.users / sc.spawn_rate
    limit = ramp + sc.settle + sc.duration + sc.grace + 90
    cpu_before, gen_before = setup.cpu(), children_cpu_seconds()
    handler_before = setup.handler_histogram()
    profiler = None
    if sc.profile:
        profiler = _start_profiler(
            setup.server_pids()[0], out, delay=ramp + 5, seconds=sc.duration - 5
        )
    started = time.time()
    server_samples: list[sendwindow.Sample] = [(started, setup.server_cpu())]
    generator_samples: list[sendwindow.Sample] = []  # locust's own process tree
    probe = mq.Probe(setup.cluster, setup.redis_pids()) if sc.mq and setup.cluster else None
    if probe is not None:
        probe.start()
    try:
        with open(out / "locust.log", "w") as log:
            env = dict(os.environ)
            env.pop(tails.ENV, None)  # one run's log never lands in another's directory
            if sc.delivery_log:
                env[tails.ENV] = str(out / "deliveries")
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env
            )
            while proc.poll() is None and time.time() - started < limit:
                now = time.time()
                generator_samples.append((now, cpu_seconds(proc.pid, tree=True)))
                server_samples.append((now, setup.server_cpu()))
                time.sleep(SAMPLE_INTERVAL_S)
            if proc.poll() is None:
                proc.kill()
            code = proc.wait()
    finally:
        if probe is not None:
            probe.stop()
    server_samples.append((time.time(), setup.server_cpu()))
    elapsed = time.time() - started
    if profiler is not None:
        profiler.wait(timeout=60)
    cpu_after, gen_after = setup.cpu(), children_cpu_seconds()
    handler = handler_summary(handler_before, setup.handler_histogram())
    summary_path = out / "locust_chat_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    row = {
        "scenario": asdict(sc),
        "exit_code": code,
        "seconds": round(elapsed, 1),
        "load_before": round(load_before, 2),
        "load_after": round(load_average(), 2),
        "waited_for_quiet_s": round(waited),
        "pytest_processes": pytests,
        "cpu_s": {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_after},
        # Forked locust workers are not always reaped before the master exits: the larger of
        # the sampled tree and the reaped children's rusage.
        "load_generator_cpu_s": round(
            max([gen_after - gen_before, *(cpu for _, cpu in generator_samples)]), 2
        ),
        "summary": summary,
        # Servers' CPU from the senders' start to their stop (or the last delivery, if
        # later) over the deliveries: without ramp-up, joins and the grace period.
        "send_window": sendwindow.marginal(server_samples, summary),
        # The same for the load generator (locust's process tree): what a delivery costs it.
        "send_window_load_generator": sendwindow.marginal(generator_samples, summary),
        "message_handler": handler,
        "dir": str(out),
    }
    if probe is not None:
        row["mq"] = probe.figures(summary)
    (out / "row.json").write_text(json.dumps(row, indent=2) + "\n")
    return row


def _start_profiler(pid: int, out: Path, delay: float, seconds: float) -> subprocess.Popen:
    """py-spy record of one worker, started once the senders should be sending."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    script = (
        f"sleep {delay:.0f}; "
        f"{py_spy} record --nonblocking -r 100 -d {seconds:.0f} -p {pid} --format raw "
        f"-o {out / 'profile.raw.txt'} > {out / 'py-spy.log'} 2>&1"
    )
    return subprocess.Popen(["bash", "-c", script])
