"""The benchmark campaign: run a list of scenarios, one bounded locust run each, into one table.

    .venv/bin/python loadtest/campaign.py --list
    .venv/bin/python loadtest/campaign.py --only size-100,size-500 [--out DIR]

Every server set-up is started here and stopped after its scenarios:
- chat: deploy/cluster.py's Cluster (N workers, private redis-server, nginx in front) on one
  fresh PostgreSQL database for the whole campaign (created on 127.0.0.1:5432, dropped at
  the end) and one SECRET_KEY, so the users registered once (chatload.accounts, through
  nginx) keep their tokens across set-ups; the load test's users connect through nginx;
- node: N Node peer processes (loadtest/node-peer) on a private redis-server, which the users
  connect to directly (round-robin), as chatload.stack does.

Per run it records locust's summary (locust_chat_summary.json), the load average before and
after, and the CPU seconds of the servers (chat workers or Node peers), of nginx, of redis and
of the load generator, so the cost per delivery can be compared across room sizes. Before each
run it waits (bounded) for the machine to be quiet: load average below --quiet-load.
Results: DIR/results.md (the table), DIR/results.jsonl, one locust directory per run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import requests

LOADTEST_DIR = Path(__file__).resolve().parent
REPO_ROOT = LOADTEST_DIR.parent
for extra in (LOADTEST_DIR, REPO_ROOT / "deploy", REPO_ROOT / "services" / "testkit"):
    sys.path.insert(0, str(extra))

from cluster import Cluster  # noqa: E402

from chatload import mq, sendwindow  # noqa: E402
from chatload.accounts import DEFAULT_PASSWORD, register  # noqa: E402
from chatload.stack import DEFAULT_POSTGRES, LOAD_LIMITS, NodePeer  # noqa: E402
from testkit.processes import PostgresDatabase, RedisServer, free_port  # noqa: E402

USER_PREFIX = "bench"
# A run is saturated when p99 fan-out passes this, or anything is lost (issue 5).
SATURATION_P99_MS = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Server CPU is sampled this often while locust runs, for the send window's CPU (a tick is
# 10 ms, so a finer interval would only add noise).
SAMPLE_INTERVAL_S = 0.25


@dataclass(frozen=True)
class Scenario:
    """One locust run against one server set-up."""

    name: str
    servers: str = "chat"  # chat (through nginx) | node (direct)
    workers: int = 3
    async_mode: str = "gevent"
    users: int = 1000
    senders: int = 5
    rate: float = 4.0  # per sender
    duration: float = 30
    grace: float = 5
    spawn_rate: float = 100
    message_size: int = 128
    locust_processes: int = 2  # 1: one process; N > 1: --processes N
    profile: bool = False  # py-spy record of the first server process while senders send
    # chat only: the users connect straight to the workers (round-robin), as the Node peer's
    # users do, instead of through nginx; WebSocket-only users need no affinity.
    direct: bool = False
    env: dict[str, str] = field(default_factory=dict)  # extra worker environment
    room_sizes: str = ""  # rooms of these sizes in turn ('2,3,4'); else one room of everybody
    # chat only: "single" (one private redis-server) or "cluster" (a private 3-primary Redis
    # Cluster, deploy/cluster.py's REDIS=cluster).
    redis: str = "single"
    # The message queue's figures (mq.md): each worker's chat_mq_* metrics read in a quiet
    # moment before the senders start (--chat-settle) and after the last delivery, and each
    # worker's and each Redis node's CPU in the send window.
    mq: bool = False
    settle: float = 0  # seconds between the last join and the senders' start

    @property
    def setup(self) -> tuple:
        return (
            self.servers,
            self.workers,
            self.async_mode,
            self.redis,
            tuple(sorted(self.env.items())),
        )


# The worker environment of the single-channel comparison (the patch above reads it).
SINGLE_CHANNEL = {"MQ_BENCH_SINGLE_CHANNEL": "1"}
SINGLE_CHANNEL_PATCH = LOADTEST_DIR / "patches" / "single-channel-manager.patch"


def _by_name(scenarios: list[Scenario]) -> dict[str, Scenario]:
    return {s.name: s for s in scenarios}


def require_single_channel_patch() -> None:
    """The single-channel scenarios measure nothing new without the patch: refuse them."""
    source = REPO_ROOT / "services" / "chat" / "chat" / "cluster" / "mq.py"
    if "class SingleChannelBench" not in source.read_text():
        raise SystemExit(
            f"the *-1ch scenarios need the benchmark-only manager: git apply {SINGLE_CHANNEL_PATCH}"
            " (and git checkout the two files after the campaign)"
        )


def _scenarios() -> list[Scenario]:
    out: list[Scenario] = [
        # A few seconds, to check the campaign itself.
        Scenario("smoke", users=20, duration=5, grace=2, locust_processes=1, spawn_rate=20),
        Scenario(
            "peer-smoke",
            servers="node",
            users=20,
            duration=5,
            grace=2,
            locust_processes=1,
            spawn_rate=20,
        ),
    ]
    # 1. Room size at a fixed rate (5 senders x 4 msg/s), 3 workers.
    for members in (100, 500, 1000, 2000):
        out.append(Scenario(f"size-{members}", users=members))
        out.append(Scenario(f"peer-size-{members}", servers="node", users=members))
    # 1a. Each message's fixed cost: a room of just the 5 senders (4 deliveries a message).
    out.append(Scenario("fixed-5", users=5, locust_processes=1, spawn_rate=5))
    out.append(Scenario("peer-fixed-5", servers="node", users=5, locust_processes=1, spawn_rate=5))
    out.append(Scenario("profile-fixed-5", users=5, locust_processes=1, spawn_rate=5, profile=True))
    # 1b. Saturation: raise the rate at 1,000 members (per-sender rates; 5 senders).
    for rate in (1, 2, 6, 8, 10, 15, 20):
        out.append(Scenario(f"rate-1000-{rate * 5}", users=1000, rate=rate, duration=20))
        out.append(
            Scenario(
                f"peer-rate-1000-{rate * 5}", servers="node", users=1000, rate=rate, duration=20
            )
        )
    for members in (100, 500, 2000):
        for rate in (1, 2, 6, 8, 10, 15, 20):
            out.append(
                Scenario(
                    f"peer-rate-{members}-{rate * 5}",
                    servers="node",
                    users=members,
                    rate=rate,
                    duration=20,
                )
            )
            out.append(
                Scenario(f"rate-{members}-{rate * 5}", users=members, rate=rate, duration=20)
            )
    # 2. The 1,000-member room on 1, 2, 3 workers, at 20 msg/s and below saturation (10).
    for workers in (1, 2, 3):
        out.append(Scenario(f"workers-{workers}", workers=workers))
        out.append(Scenario(f"peer-workers-{workers}", servers="node", workers=workers))
        for rate in (1, 2):
            out.append(
                Scenario(f"workers-{workers}-r{rate * 5}", workers=workers, rate=rate, duration=20)
            )
            out.append(
                Scenario(
                    f"peer-workers-{workers}-r{rate * 5}",
                    servers="node",
                    workers=workers,
                    rate=rate,
                    duration=20,
                )
            )
    # 1c. The same without nginx on the chat's path, for a like-for-like saturation figure.
    out.append(Scenario("direct-size-1000", users=1000, direct=True))
    for rate in (10, 15):
        out.append(
            Scenario(
                f"direct-rate-1000-{rate * 5}", users=1000, rate=rate, duration=20, direct=True
            )
        )
    # 3. Profile of one worker under load.
    out.append(Scenario("profile-1000", profile=True, duration=30))
    # 5. The message queue (issue 15): per-room channels on Redis sharded pub/sub. 6 workers;
    # 600 rooms of 2, 3, 4 members (1,800 users, one sender per room at 0.2 msg/s: 120 msg/s),
    # and the 1,000-member room at 10 msg/s; on one Redis and on a 3-node Redis Cluster.
    for redis_mode in ("single", "cluster"):
        suffix = "" if redis_mode == "single" else "-cluster"
        out.append(
            Scenario(
                f"mq-small-600{suffix}",
                workers=6,
                users=1800,
                room_sizes="2,3,4",
                senders=600,
                rate=0.2,
                duration=30,
                # 100/s left 500 of 1,800 joins past their 15 s on this 2-core box: a member
                # whose join timed out but went through is one the count cannot place.
                spawn_rate=40,
                redis=redis_mode,
                mq=True,
                settle=4,
            )
        )
        out.append(
            Scenario(
                f"mq-room-1000{suffix}",
                workers=6,
                users=1000,
                rate=2,
                duration=30,
                spawn_rate=50,
                redis=redis_mode,
                mq=True,
                settle=4,
            )
        )
    # The same two on the single-channel design (every emit on one channel every worker
    # hears), on otherwise the same code: needs loadtest/patches/single-channel-manager.patch
    # applied to the worktree (a benchmark-only manager, never part of the product).
    for name in ("mq-small-600", "mq-room-1000"):
        out.append(replace(_by_name(out)[name], name=f"{name}-1ch", env=SINGLE_CHANNEL))
    # A few seconds, to check the message-queue figures themselves.
    out.append(
        Scenario(
            "mq-smoke",
            workers=3,
            users=27,
            room_sizes="2,3,4",
            senders=9,
            rate=1,
            duration=5,
            grace=3,
            spawn_rate=27,
            locust_processes=1,
            mq=True,
            settle=3,
        )
    )
    out.append(replace(out[-1], name="mq-smoke-cluster", redis="cluster"))
    out.append(replace(out[-2], name="mq-smoke-1ch", env=SINGLE_CHANNEL))
    # 4. eventlet.
    out.append(Scenario("eventlet-1000", async_mode="eventlet"))
    out.append(Scenario("eventlet-1000-r10", async_mode="eventlet", rate=2, duration=20))
    out.append(Scenario("eventlet-100", async_mode="eventlet", users=100))
    return out


SCENARIOS = {s.name: s for s in _scenarios()}


# -- measuring ----------------------------------------------------------------------------


def load_average() -> float:
    return os.getloadavg()[0]


def pytest_processes() -> int:
    out = subprocess.run(["pgrep", "-c", "-f", "pytest"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def wait_until_quiet(threshold: float, max_wait: float) -> tuple[float, float]:
    """Wait (at most max_wait s) for the 1-minute load average to fall below threshold."""
    started = time.monotonic()
    while load_average() >= threshold and time.monotonic() - started < max_wait:
        time.sleep(5)
    return load_average(), time.monotonic() - started


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    return kids


def cpu_seconds(pid: int, tree: bool = False) -> float:
    """User + system CPU seconds of a process (and, with tree, of its living descendants)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / CLK_TCK
    except OSError:
        return 0.0
    if tree:
        total += sum(cpu_seconds(k, tree=True) for k in _children(pid))
    return total


def children_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# -- server set-ups -----------------------------------------------------------------------


class Setup:
    """Servers for a group of scenarios: `targets`, `host`, and CPU counters by role."""

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
        return sum(cpu_seconds(pid) for pid in self.server_pids())

    def redis_pids(self) -> list[int]:
        """The redis-server processes: one, or each node of the Redis Cluster."""
        if self.cluster and self.cluster.redis_cluster is not None:
            return [node.pid for node in self.cluster.redis_cluster.nodes]
        return [(self.cluster.redis if self.cluster else self.redis).pid]

    def cpu(self) -> dict[str, float]:
        out = {"servers": self.server_cpu()}
        out["nginx"] = cpu_seconds(self.cluster.nginx.pid, tree=True) if self.cluster else 0.0
        out["redis"] = sum(cpu_seconds(pid) for pid in self.redis_pids())
        return out

    def handler_histogram(self) -> dict[str, float]:
        """The workers' `message` handler histogram (cumulative), summed: bucket -> count."""
        total: dict[str, float] = {}
        for w in self.cluster.workers if self.cluster else []:
            try:
                text = requests.get(w.url + "/metrics", timeout=5).text
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

    def stop(self) -> None:
        if self.cluster:
            self.cluster.stop()
        for p in reversed(self.peers):
            p.stop()
        if self.redis:
            self.redis.stop()


# -- one run ------------------------------------------------------------------------------


def locust_command(sc: Scenario, setup: Setup, out: Path, tokens: Path | None) -> list[str]:
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
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
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


def _start_profiler(pid: int, out: Path, delay: float, seconds: float) -> subprocess.Popen:
    """py-spy record of one worker, started once the senders should be sending."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    script = (
        f"sleep {delay:.0f}; "
        f"{py_spy} record --nonblocking -r 100 -d {seconds:.0f} -p {pid} --format raw "
        f"-o {out / 'profile.raw.txt'} > {out / 'py-spy.log'} 2>&1"
    )
    return subprocess.Popen(["bash", "-c", script])


# -- the table ----------------------------------------------------------------------------

HEADER = (
    "| scenario | servers | members | msg/s sent | deliveries/s | p50 | p95 | p99 | max "
    "| same p50 | cross p50 | ack p99 | lost | dup | join fail | server CPU s | "
    "µs CPU/delivery | µs CPU/delivery (send window) | µs above idle | load gen CPU s "
    "| load before→after |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def table_row(row: dict[str, Any]) -> str:
    sc, s = row["scenario"], row["summary"]
    if not s:
        return f"| {sc['name']} | (no summary: exit {row['exit_code']}, see {row['dir']}) |"
    f = s["fanout_ms"]
    delivered = s.get("delivered") or f["all"]["count"]
    cpu = row["cpu_s"]["servers"]
    per = f"{cpu / delivered * 1e6:.0f}" if delivered else "-"
    servers = f"{sc['servers']} x{sc['workers']}" + (
        f" {sc['async_mode']}" if sc["servers"] == "chat" else ""
    )
    if sc.get("direct"):
        servers += " direct"
    ack = s.get("ack_ms") or {}
    marginal = row.get("send_window") or {}
    return (
        f"| {sc['name']} | {servers} | {sc['users']} | {s['messages_per_s']} "
        f"| {s['deliveries_per_s']:,.0f} | {f['all']['p50']} | {f['all']['p95']} "
        f"| {f['all']['p99']} | {f['all']['max']:,.0f} | {f['same-node']['p50']} "
        f"| {f['cross-node']['p50']} | {ack.get('p99', '-')} | {s['lost']} | {s['duplicated']} "
        f"| {s.get('join_failures', 0)} | {cpu:.1f} | {per} "
        f"| {marginal.get('us_cpu_per_delivery', '-')} "
        f"| {marginal.get('us_cpu_per_delivery_above_idle', '-')} "
        f"| {row['load_generator_cpu_s']:.1f} "
        f"| {row['load_before']}→{row['load_after']} |"
    )


def saturated(row: dict[str, Any]) -> bool:
    s = row["summary"]
    return not s or s["lost"] > 0 or s["fanout_ms"]["all"]["p99"] > SATURATION_P99_MS


# -- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help="comma-separated scenario names, in this order")
    p.add_argument("--list", action="store_true", help="print the scenarios and exit")
    p.add_argument(
        "--out",
        type=Path,
        default=LOADTEST_DIR / "results" / f"campaign-{time.strftime('%Y%m%d-%H%M%S')}",
    )
    p.add_argument(
        "--quiet-load",
        type=float,
        default=1.5,
        help="wait for the 1-minute load average to fall below this before a run",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="seconds to wait for that at most (then run anyway, and say so)",
    )
    p.add_argument(
        "--stop-when-saturated",
        action="store_true",
        help="stop a list after its first saturated run (a rate ladder)",
    )
    p.add_argument(
        "--locust-processes",
        type=int,
        default=0,
        help="override every scenario's locust process count",
    )
    p.add_argument("--duration", type=float, default=0, help="override every scenario's duration")
    p.add_argument("--postgres", default=os.environ.get("POSTGRES_URL", DEFAULT_POSTGRES))
    args = p.parse_args(argv)
    if args.list:
        for sc in SCENARIOS.values():
            print(sc.name, {k: v for k, v in asdict(sc).items() if k != "name"})
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)} (see --list)")
    scenarios = [SCENARIOS[n] for n in names]
    if any(s.env.get("MQ_BENCH_SINGLE_CHANNEL") for s in scenarios):
        require_single_channel_patch()
    if args.locust_processes:
        scenarios = [replace(s, locust_processes=args.locust_processes) for s in scenarios]
    if args.duration:
        scenarios = [replace(s, duration=args.duration) for s in scenarios]

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    table = out / "results.md"
    if not table.exists():
        table.write_text(HEADER + "\n")
    database = PostgresDatabase(args.postgres)
    secret = secrets.token_urlsafe(32)
    tokens_path = out / "tokens.json"
    tokens: dict[str, str] = {}
    setup: Setup | None = None
    setup_key: tuple | None = None
    try:
        for i, sc in enumerate(scenarios):
            if setup_key != sc.setup:
                if setup is not None:
                    setup.stop()
                setup = None
                setup = Setup(
                    sc, out / f"setup-{i:02d}-{sc.servers}-{sc.workers}", database.url, secret
                )
                setup_key = sc.setup
                print(
                    f"set-up: {sc.servers} x{sc.workers} "
                    f"{sc.async_mode if sc.servers == 'chat' else ''} at {setup.host}",
                    flush=True,
                )
            use_tokens = None
            if sc.servers == "chat":
                if len(tokens) < sc.users:
                    started = time.monotonic()
                    register(setup.host, USER_PREFIX, sc.users, tokens, DEFAULT_PASSWORD)
                    tokens_path.write_text(json.dumps(tokens))
                    print(
                        f"  registered users up to {sc.users} in "
                        f"{time.monotonic() - started:.0f} s",
                        flush=True,
                    )
                use_tokens = tokens_path
            print(f"run {sc.name}: load {load_average():.2f}", flush=True)
            row = run_one(
                sc, setup, out / f"{i:02d}-{sc.name}", use_tokens, args.quiet_load, args.quiet_wait
            )
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            line = table_row(row)
            with open(table, "a") as f:
                f.write(line + "\n")
            print(line, flush=True)
            if row.get("mq"):
                mq_table = out / "mq.md"
                text = mq.table(sc.name, sc.redis, row)
                with open(mq_table, "a") as f:
                    f.write(text + "\n\n")
                print(text, flush=True)
            if args.stop_when_saturated and saturated(row):
                print(f"saturated at {sc.name}: stopping the list", flush=True)
                break
    finally:
        if setup is not None:
            setup.stop()
        database.drop()
    print(f"results: {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
