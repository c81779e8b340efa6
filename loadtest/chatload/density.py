"""Connection density: N idle WebSocket clients on one chat worker, then on one Node peer.

    python -m chatload.density --clients 8000 --idle 30 [--servers chat,node] [--json FILE]

For each server in turn (one process each, started and stopped here by PID): warm it up with
a few connections, read its resident memory, connect N idle clients (the official socket.io
client on Node, WebSocket transport, `loadtest/node-peer/idle-clients.js`, spread over
several Node processes), let them idle for `--idle` seconds while the server pings them
(every 25 s by default, on both servers), and print per server:

- memory per connection: (RSS after the idle window - RSS before connecting) / connections
- idle CPU: the server's user+system CPU over the idle window, in % of one core
- connect rate: connections / (last `session` event - first connect started)
- errors: connections refused or timed out, plus disconnects during the idle window

The chat worker runs as `make run` runs it (gevent, SQLite, no Redis), with the per-user
connection limit and the registration limit lifted, so a few users registered over REST hold
every connection. The Node peer (`node-peer/server.js`) needs a redis-server: a private one.
Every wait is bounded; the load average is printed next to each figure (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from testkit.processes import (
    NODE_PEER_DIR,
    ChatWorker,
    NodePeer,
    Process,
    RedisServer,
    cpu_seconds,
    find_program,
    rss_kib,
)

IDLE_CLIENTS_JS = NODE_PEER_DIR / "idle-clients.js"
# One Node process holds a few thousand sockets comfortably (~30 KiB each); more processes
# share the connect work over both cores.
SOCKETS_PER_CLIENT_PROCESS = 2500
# Connections being opened at once per client process: enough to measure the server's
# accept rate, few enough not to hit the listen backlog (128 by default).
CONNECT_CONCURRENCY = 50
# Accounts whose tokens the connections share; each holds clients / USERS connections.
USERS = 8
PASSWORD = "correct horse battery"
WARM_UP_CONNECTIONS = 50
# After the last connect, before the idle window: let the last handshakes' garbage go.
SETTLE_SECONDS = 2.0


@dataclass
class Figures:
    """What one server measured (one row of the table)."""

    server: str
    clients: int
    connected: int = 0
    connect_errors: int = 0
    idle_disconnects: int = 0
    first_error: str | None = None
    connect_seconds: float = 0.0
    connect_rate: float = 0.0
    rss_before_kib: int = 0
    rss_connected_kib: int = 0
    rss_after_idle_kib: int = 0
    kib_per_connection: float = 0.0
    idle_seconds: float = 0.0
    idle_cpu_percent: float = 0.0
    load_before: float = 0.0
    load_after: float = 0.0
    pid: int = 0
    notes: dict = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.connect_errors + self.idle_disconnects


def loadavg() -> float:
    return os.getloadavg()[0]


def raise_fd_limit(needed: int) -> None:
    """Soft RLIMIT_NOFILE up to the hard one (children inherit it); refuse if still short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"open-file limit {soft} < {needed} needed: raise `ulimit -Hn`")


class ClientGroup:
    """Node processes holding idle connections to one server; stopped by PID."""

    def __init__(
        self,
        target: str,
        tokens: Path,
        clients: int,
        workdir: Path,
        tag: str,
        transport: str = "websocket",
    ) -> None:
        node = find_program("node")
        procs = max(1, math.ceil(clients / SOCKETS_PER_CLIENT_PROCESS))
        self.procs: list[subprocess.Popen] = []
        first = 0
        for i in range(procs):
            count = clients // procs + (1 if i < clients % procs else 0)
            argv = [
                node,
                str(IDLE_CLIENTS_JS),
                "--target",
                target,
                "--tokens",
                str(tokens),
                "--first",
                str(first),
                "--count",
                str(count),
                "--concurrency",
                str(CONNECT_CONCURRENCY),
                "--max-seconds",
                "900",
                "--transport",
                transport,
            ]
            first += count
            err = open(workdir / f"clients-{tag}-{i}.log", "ab")  # noqa: SIM115
            self.procs.append(
                subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    cwd=NODE_PEER_DIR,
                    start_new_session=True,
                )
            )
            err.close()

    def _read(self, proc: subprocess.Popen, event: str, deadline: float) -> dict:
        """The next JSON line of `event` from one process (a line at a time, bounded)."""
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    break
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"client process {proc.pid} ended (exit {proc.poll()})")
                msg = json.loads(line)
                if msg.get("event") == "fatal":
                    raise RuntimeError(f"client process {proc.pid}: {msg['error']}")
                if msg.get("event") == event:
                    return msg
        raise TimeoutError(f"client process {proc.pid}: no {event!r} in time")

    def wait_connected(self, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        return [self._read(p, "connected", deadline) for p in self.procs]

    def report(self, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.stdin.write("report\n")
            p.stdin.flush()
        return [self._read(p, "report", deadline) for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.stdin.write("exit\n")
                    p.stdin.close()
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
            if p.stdout:
                p.stdout.close()


def register_chat_users(url: str, users: int, prefix: str) -> list[str]:
    """Tokens of `users` fresh accounts on the chat worker (REST)."""
    import requests

    tokens = []
    with requests.Session() as http:
        for i in range(users):
            creds = {"username": f"{prefix}-u{i}", "password": PASSWORD}
            r = http.post(f"{url}/api/users", json=creds, timeout=60)
            if r.status_code not in (200, 201, 409):
                raise RuntimeError(f"registering {creds['username']}: {r.status_code} {r.text}")
            r = http.post(f"{url}/api/tokens", json=creds, timeout=60)
            r.raise_for_status()
            tokens.append(r.json()["token"])
    return tokens


def start_server(kind: str, clients: int, workdir: Path) -> tuple[list[Process], str, int]:
    """(processes to stop, base URL, PID to measure) for 'chat' or 'node'."""
    if kind == "chat":
        worker = ChatWorker(
            workdir,
            env={
                "ASYNC_MODE": "gevent",
                "DATABASE_URL": f"sqlite:///{workdir / 'chat.db'}",
                "REDIS_URL": "",
                "NODE_ID": "density-chat",
                "MAX_CONNECTIONS_PER_USER": str(clients + WARM_UP_CONNECTIONS),
                # A setting of another branch (per-address registration limit); harmless
                # where it does not exist yet.
                "RATE_LIMIT_REGISTRATIONS": "1000000",
                "LOG_LEVEL": "WARNING",
            },
        )
        return [worker], worker.url, worker.pid
    redis = RedisServer(workdir)
    try:
        peer = NodePeer(workdir, redis.url, "density-peer")
    except BaseException:
        redis.stop()
        raise
    return [peer, redis], peer.url, peer.pid


def measure(kind: str, clients: int, idle: float, workdir: Path) -> Figures:
    """One server, start to stop: see the module docstring."""
    workdir.mkdir(parents=True, exist_ok=True)
    figures = Figures(server=kind, clients=clients)
    procs, url, pid = start_server(kind, clients, workdir)
    figures.pid = pid
    groups: list[ClientGroup] = []
    try:
        if kind == "chat":
            tokens = register_chat_users(url, USERS, f"density{os.getpid()}")
        else:
            tokens = [f"density-u{i}" for i in range(USERS)]
        tokens_file = workdir / f"tokens-{kind}.json"
        tokens_file.write_text(json.dumps(tokens))

        warm = ClientGroup(url, tokens_file, min(WARM_UP_CONNECTIONS, clients), workdir, "warm")
        groups.append(warm)
        warm.wait_connected(60)
        warm.stop()
        groups.remove(warm)
        time.sleep(SETTLE_SECONDS)

        figures.rss_before_kib = rss_kib(pid)
        group = ClientGroup(url, tokens_file, clients, workdir, kind)
        groups.append(group)
        done = group.wait_connected(60 + clients / 20)
        figures.connected = sum(d["ok"] for d in done)
        figures.connect_errors = sum(d["errors"] for d in done)
        figures.first_error = next((d["first_error"] for d in done if d["first_error"]), None)
        span_ms = max(d["finished"] for d in done) - min(d["started"] for d in done)
        figures.connect_seconds = span_ms / 1000
        figures.connect_rate = figures.connected / max(figures.connect_seconds, 1e-3)
        figures.rss_connected_kib = rss_kib(pid)
        time.sleep(SETTLE_SECONDS)

        figures.load_before = loadavg()
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(idle)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        figures.load_after = loadavg()
        figures.idle_seconds = t1 - t0
        figures.idle_cpu_percent = 100 * (cpu1 - cpu0) / (t1 - t0)
        figures.rss_after_idle_kib = rss_kib(pid)
        reports = group.report()
        figures.idle_disconnects = sum(r["disconnects"] for r in reports)
        figures.notes["open_after_idle"] = sum(r["open"] for r in reports)
        if figures.connected:
            delta = figures.rss_after_idle_kib - figures.rss_before_kib
            figures.kib_per_connection = delta / figures.connected
    finally:
        for g in groups:
            g.stop()
        for p in procs:
            p.stop()
    return figures


LABELS = {"chat": "chat worker (gevent)", "node": "Node socket.io 4.8 peer"}


def table(rows: list[Figures]) -> str:
    head = (
        f"{'server':<24}{'clients':>8}{'errors':>7}{'conn/s':>8}{'RSS0 MiB':>9}"
        f"{'RSS MiB':>9}{'KiB/conn':>9}{'idle CPU %':>11}  load avg"
    )
    lines = [head]
    for f in rows:
        lines.append(
            f"{LABELS.get(f.server, f.server):<24}{f.connected:>8}{f.errors:>7}"
            f"{f.connect_rate:>8.0f}{f.rss_before_kib / 1024:>9.1f}"
            f"{f.rss_after_idle_kib / 1024:>9.1f}{f.kib_per_connection:>9.1f}"
            f"{f.idle_cpu_percent:>11.2f}  {f.load_before:.2f}->{f.load_after:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8000)
    p.add_argument("--idle", type=float, default=30.0, help="seconds of the idle window")
    p.add_argument("--servers", default="chat,node", help="comma-separated, in run order")
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(__file__).resolve().parents[1]
        / "results"
        / f"density-{time.strftime('%Y%m%d-%H%M%S')}",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    # The worker and the Node processes run in directories of their own: paths go absolute.
    args.workdir = args.workdir.resolve()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not set(servers) <= set(LABELS):
        p.error(f"--servers: {', '.join(LABELS)} expected")
    raise_fd_limit(args.clients + 1024)
    print(
        f"connection density: {args.clients} idle WebSocket clients, {args.idle:g} s idle "
        f"window, servers {', '.join(servers)}; logs in {args.workdir}",
        flush=True,
    )
    rows = []
    for kind in servers:
        figures = measure(kind, args.clients, args.idle, args.workdir / kind)
        rows.append(figures)
        print(f"{kind}: {json.dumps(asdict(figures))}", flush=True)
    print(table(rows))
    for f in rows:
        if f.first_error:
            print(f"{f.server}: first error: {f.first_error}")
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in rows], indent=2))
    return 1 if any(f.errors or f.connected != f.clients for f in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
