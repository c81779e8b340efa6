"""Run N chat workers behind nginx on one machine: `make cluster`, `cluster-up`, `cluster-down`.

    python -m testkit.cluster run    # foreground; Ctrl-C or SIGTERM stops everything it started
    python -m testkit.cluster up     # detached; returns once every worker and nginx answer
    python -m testkit.cluster down   # stops a detached cluster by the PIDs it recorded
    python -m testkit.cluster status

Settings come from the environment (the make variables of deploy/cluster.mk): WORKERS (3),
HTTP_PORT (8080; workers on HTTP_PORT+1 .. HTTP_PORT+WORKERS), REDIS_URL (default: a private
redis-server on a free port; REDIS=cluster: a private 3-primary Redis Cluster), DATABASE_URL
(default: one SQLite file in WAL mode shared by all workers), ASYNC_MODE (passed through),
CLUSTER_DIR (run/cluster).

Tests, fault injection and the benchmark campaign import it: `Cluster(run_dir, workers=3).start()`
gives `.url` (nginx), `.workers` (testkit ChatWorkers: url, node_id, kill(), stop(), start()),
`.nginx` and `.redis` (or `.redis_cluster`). Every process is started by testkit.processes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

from .processes import (
    REPO_ROOT,
    START_TIMEOUT_SECONDS,
    ChatWorker,
    Process,
    ProcessError,
    RedisCluster,
    RedisServer,
    find_program,
    free_port,
    free_port_block,
    port_is_free,
    same_process_runs,
    stop_pid,
    tail,
    wait_for,
    worker_environment,
)

NGINX_DIR = REPO_ROOT / "deploy" / "nginx"
# The one definition of how a worker is started and how the schema is migrated;
# docker-compose.yml runs the same commands (deploy/tests/test_compose.py checks that).
WORKER_COMMAND = ("python", "-m", "chat")
MIGRATE_COMMAND = ("python", "-m", "flask", "--app", "chat", "db", "upgrade")
# Every upstream server gets these passive health-check parameters (why: chat.conf.template).
UPSTREAM_SERVER_PARAMS = "max_fails=1 fail_timeout=10s"
STATE_FILE = "cluster.json"
# nginx's limit on connections one client address holds at once (NGINX_CONNECTIONS_PER_ADDRESS;
# chat.conf.template). Above the load campaign's 1,000 users on one machine, each a WebSocket
# plus the odd REST call; far below what exhausts a worker. Offices behind one NAT may need more.
DEFAULT_CONNECTIONS_PER_ADDRESS = 2000
_PLACEHOLDER = re.compile(r"\$\{(CHAT_[A-Z_]+)\}")
# One line of nginx's `chat` log_format (chat.conf.template). A request retried on another
# worker lists both: "upstream=a:1, b:2 ustatus=502, 200"; `key` is the affinity cookie, or
# the request id where there is none (both 32 hex digits).
ACCESS_LINE = re.compile(
    r'"(?P<method>\S+) (?P<uri>\S+) [^"]*" (?P<status>\d{3}) \d+ rt=\S+ '
    r"upstream=(?P<upstream>.+?) ustatus=(?P<ustatus>.+?) key=(?P<key>[0-9a-f]+)$"
)


class ClusterError(ProcessError):
    """The cluster could not be started or stopped; the message says why and what to do."""


# --- nginx -------------------------------------------------------------------------------------


class Nginx(Process):
    """nginx, unprivileged, with its config, pid, logs and temp files in the run directory."""

    def __init__(
        self,
        run_dir: Path,
        listen_host: str,
        port: int,
        upstreams: Sequence[str],
        sid_tags: Sequence[str] = (),
        connections_per_address: int = DEFAULT_CONNECTIONS_PER_ADDRESS,
    ) -> None:
        self.host, self.port = listen_host, port
        self.dir = run_dir / "nginx"
        self.conf = self.dir / "nginx.conf"
        self.access_log = self.dir / "access.log"
        self.error_log = self.dir / "error.log"
        render_nginx_config(
            self.dir,
            f"{listen_host}:{port}",
            upstreams,
            self.access_log,
            sid_tags=sid_tags,
            connections_per_address=connections_per_address,
        )
        binary = find_program("nginx")
        self.base_argv = [
            binary,
            "-p",
            f"{self.dir}/",
            "-e",
            str(self.error_log),
            "-c",
            str(self.conf),
        ]
        super().__init__("nginx", self.base_argv, run_dir / "logs" / "nginx.log")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def check_config(self) -> None:
        """`nginx -t` on the rendered config: a mistake is reported before anything listens."""
        out = subprocess.run([*self.base_argv, "-t"], capture_output=True, text=True)
        if out.returncode != 0:
            raise ClusterError(f"nginx rejected {self.conf}:\n{out.stderr.strip()}")

    def wait_ready(self, timeout: float = 15) -> None:
        def answers() -> bool:
            if not self.alive():
                raise ClusterError(
                    f"nginx exited:\n{tail(self.log_text())}\n"
                    f"{tail(self.error_log.read_text(errors='replace'))}"
                )
            return requests.get(self.url + "/healthz", timeout=3).status_code == 200

        wait_for(answers, timeout, f"nginx on port {self.port}", interval=0.1)


def render_template(text: str, values: Mapping[str, str]) -> str:
    """Fill in ${CHAT_*} placeholders (as the nginx image's envsubst does); others stay."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise ClusterError(f"nginx template placeholder ${{{name}}} has no value")
        return values[name]

    return _PLACEHOLDER.sub(value, text)


def upstream_servers(addresses: Sequence[str]) -> str:
    """The CHAT_UPSTREAM_SERVERS value: one `server` line per worker address."""
    return " ".join(f"server {addr} {UPSTREAM_SERVER_PARAMS};" for addr in addresses)


# Idle connections nginx keeps to each worker's own upstream (the one for requests that carry
# its session id): most of a client's polls go there, but only one is in flight per client.
SID_UPSTREAM_KEEPALIVE = 16


def sid_upstreams(workers: Mapping[str, str]) -> str:
    """The CHAT_SID_UPSTREAMS value: for each worker's SID_TAG, an upstream of that worker only."""
    return " ".join(
        f"upstream chat_sid_{tag} {{ server {address}; keepalive {SID_UPSTREAM_KEEPALIVE}; }}"
        for tag, address in workers.items()
    )


def sid_routes(tags: Sequence[str]) -> str:
    """The CHAT_SID_ROUTES value: a session id starting `<tag>.` goes to that tag's upstream."""
    return " ".join(f'"~^{tag}\\." chat_sid_{tag};' for tag in tags)


def render_nginx_config(
    nginx_dir: Path,
    listen: str,
    upstreams: Sequence[str],
    access_log: Path,
    worker_processes: int = 1,
    sid_tags: Sequence[str] = (),
    connections_per_address: int = DEFAULT_CONNECTIONS_PER_ADDRESS,
) -> Path:
    """Write nginx.conf and conf.d/chat.conf for a cluster into `nginx_dir`; returns nginx.conf.

    `sid_tags[i]` is the SID_TAG of the worker at `upstreams[i]` (none given: no sid routing).
    """
    (nginx_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (nginx_dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    values = {
        "CHAT_RUN_DIR": str(nginx_dir),
        "CHAT_NGINX_WORKER_PROCESSES": str(worker_processes),
        "CHAT_LISTEN": listen,
        "CHAT_UPSTREAM_SERVERS": upstream_servers(upstreams),
        "CHAT_ACCESS_LOG": str(access_log),
        "CHAT_SID_UPSTREAMS": sid_upstreams(dict(zip(sid_tags, upstreams, strict=False))),
        "CHAT_SID_ROUTES": sid_routes(sid_tags),
        "CHAT_CONNECTIONS_PER_ADDRESS": str(connections_per_address),
    }
    site = (NGINX_DIR / "templates" / "chat.conf.template").read_text()
    (nginx_dir / "conf.d" / "chat.conf").write_text(render_template(site, values))
    main = (NGINX_DIR / "nginx.conf.template").read_text()
    conf = nginx_dir / "nginx.conf"
    conf.write_text(render_template(main, values))
    return conf


# --- the cluster -------------------------------------------------------------------------------


class Cluster:
    """Redis (private unless given), one migrated database, N workers and nginx in front."""

    def __init__(
        self,
        run_dir: Path | str,
        *,
        workers: int = 3,
        http_port: int | None = 8080,
        redis_url: str | None = None,
        database_url: str | None = None,
        async_mode: str | None = None,
        listen_host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        connections_per_address: int = DEFAULT_CONNECTIONS_PER_ADDRESS,
        redis_mode: str | None = None,
    ) -> None:
        if workers < 1:
            raise ClusterError("WORKERS must be at least 1")
        if (redis_mode or "single") not in ("single", "cluster"):
            raise ClusterError(f"REDIS must be 'single' or 'cluster', not {redis_mode!r}")
        # "cluster": a private 3-primary Redis Cluster instead of one redis-server.
        self.redis_mode = redis_mode or "single"
        self.run_dir = Path(run_dir).resolve()
        self.worker_count = workers
        # None: any free block of ports (tests); else nginx on http_port, workers right after.
        self.http_port = http_port
        self.given_redis_url = redis_url or None
        self.given_database_url = database_url or None
        self.async_mode = async_mode or "gevent"
        self.listen_host = listen_host
        self.extra_env = dict(env or {})
        self.connections_per_address = connections_per_address
        self.redis: RedisServer | None = None
        self.redis_cluster: RedisCluster | None = None
        self.workers: list[ChatWorker] = []
        self.nginx: Nginx | None = None

    # The pieces, for callers that want them.
    @property
    def url(self) -> str:
        if self.nginx is None:
            raise ClusterError("the cluster is not started")
        return self.nginx.url

    @property
    def redis_url(self) -> str:
        if self.given_redis_url:
            return self.given_redis_url
        if self.redis_cluster is not None:
            return self.redis_cluster.url
        if self.redis is None:
            raise ClusterError("the cluster is not started")
        return self.redis.url

    @property
    def database_url(self) -> str:
        return self.given_database_url or f"sqlite:///{self.run_dir / 'data' / 'chat.db'}"

    def worker_by_node(self, node_id: str) -> ChatWorker:
        return next(w for w in self.workers if w.node_id == node_id)

    def processes(self) -> list[Process]:
        """Everything this cluster started, in start order."""
        started: list[Process] = [self.redis] if self.redis else []
        if self.redis_cluster is not None:
            started = [*started, *self.redis_cluster.nodes]
        return [*started, *self.workers, *([self.nginx] if self.nginx else [])]

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> Cluster:
        """Start everything and return once every worker's /healthz and nginx answer 200."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        find_program("nginx")
        if not self.given_redis_url:
            find_program("redis-server")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        http_port = self.http_port or free_port_block(self.worker_count + 1)
        ports = [http_port + i for i in range(1, self.worker_count + 1)]
        busy = [p for p in [http_port, *ports] if not port_is_free(p)]
        if busy:
            raise ClusterError(
                f"port(s) {', '.join(map(str, busy))} already in use; "
                "choose another HTTP_PORT (workers use HTTP_PORT+1..+WORKERS)"
            )
        if not self.given_redis_url and self.redis_mode == "cluster":
            self.redis_cluster = RedisCluster(
                self.run_dir / "redis-cluster",
                password=self._kept_secret("redis_password"),
                log_dir=self.run_dir / "logs",
            )
        elif not self.given_redis_url:
            self.redis = RedisServer(
                self.run_dir / "redis",
                free_port(),
                self._kept_secret("redis_password"),
                log_path=self.run_dir / "logs" / "redis.log",
            )
        self._prepare_database()
        env = self._worker_env()
        for i, port in enumerate(ports, start=1):
            self.workers.append(
                ChatWorker(
                    self.run_dir / "data",
                    port=port,
                    # The node id doubles as the SID_TAG nginx routes cookie-less sessions by.
                    env={**env, "NODE_ID": f"worker-{i}", "SID_TAG": f"worker-{i}"},
                    wait=False,
                    harness=False,
                    name=f"worker-{i}",
                    log_path=self.run_dir / "logs" / f"worker-{i}.log",
                )
            )
        self.save_state()
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.wait_healthy(max(1.0, deadline - time.monotonic()))
        self.nginx = Nginx(
            self.run_dir,
            self.listen_host,
            http_port,
            [f"127.0.0.1:{p}" for p in ports],
            sid_tags=[worker.env["SID_TAG"] for worker in self.workers],
            connections_per_address=self.connections_per_address,
        )
        self.nginx.check_config()
        self.nginx.start()
        self.save_state()
        self.nginx.wait_ready()

    def _prepare_database(self) -> None:
        """Create (SQLite: in WAL mode) and migrate the database once, before any worker starts."""
        if not self.given_database_url:
            path = self.run_dir / "data" / "chat.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            # WAL lets every worker read while one writes; the mode is stored in the file.
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
        env = worker_environment({**self._worker_env(), "ASYNC_MODE": "threading"}, harness=False)
        env.pop("REDIS_URL", None)  # migrating needs the database only
        out = subprocess.run(
            [sys.executable, *MIGRATE_COMMAND[1:]],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            raise ClusterError(
                f"migrating {redact(self.database_url)} failed:\n{tail(out.stdout + out.stderr)}"
            )

    def _worker_env(self) -> dict[str, str]:
        """The cluster's settings for every worker (testkit.processes.worker_environment adds
        the inherited environment and the defaults)."""
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": self._secret_key(),
            "ASYNC_MODE": self.async_mode,
            "CHAT_DATA_DIR": str(self.run_dir / "data"),
            # Migrated once above; N workers racing to migrate one database would collide.
            "AUTO_MIGRATE": "0",
            # nginx appends the client's address to X-Forwarded-For (login throttling).
            "TRUSTED_PROXY_HOPS": "1",
            **self.extra_env,
        }

    def _secret_key(self) -> str:
        """One SECRET_KEY for all workers (tokens from one verify on all), kept across runs."""
        if os.environ.get("SECRET_KEY"):
            return os.environ["SECRET_KEY"]
        return self._kept_secret("secret_key")

    def _kept_secret(self, name: str) -> str:
        """A random secret kept in the run directory (readable by its owner only)."""
        path = self.run_dir / name
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip()

    def stop(self) -> None:
        """Stop everything this cluster started: nginx first, then workers, then Redis."""
        for proc in reversed(self.processes()):
            proc.stop()
        state = self.run_dir / STATE_FILE
        if state.exists():
            state.unlink()

    def save_state(self) -> None:
        """Record PIDs and addresses, so `down` can stop a detached cluster later."""
        state = {
            "url": self.nginx.url if self.nginx else None,
            "workers": [w.url for w in self.workers],
            "redis_url": redact(self.redis_url),
            "database_url": redact(self.database_url),
            "processes": [p.describe() for p in self.processes() if p.proc is not None],
        }
        (self.run_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def access_log_since(path: Path, offset: int) -> list[dict[str, str]]:
    """nginx access log entries (`chat` log_format) written after byte `offset`: method, uri,
    status, upstream, ustatus, key. An unparsable line fails (AssertionError names it)."""
    with open(path) as f:
        f.seek(offset)
        lines = f.read().splitlines()
    entries = []
    for line in lines:
        match = ACCESS_LINE.search(line)
        assert match, f"unparsed nginx access log line: {line}"
        entries.append(match.groupdict())
    return entries


def redact(url: str) -> str:
    """A URL without its password, for logs and state files."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _pid_runs(entry: Mapping[str, object]) -> bool:
    """Is the process recorded in a state entry (name, pid, started) still that process?"""
    return same_process_runs(entry["pid"], entry["started"])  # type: ignore[arg-type]


def stop_detached(run_dir: Path) -> list[str]:
    """Stop a cluster started by `up`, by the PIDs in its state file; returns what was stopped."""
    state_path = run_dir / STATE_FILE
    if not state_path.exists():
        return []
    stopped = []
    for entry in reversed(json.loads(state_path.read_text())["processes"]):
        if stop_pid(entry["pid"], entry["started"]):
            stopped.append(f"{entry['name']} (pid {entry['pid']})")
    state_path.unlink()
    return stopped


# --- command line ------------------------------------------------------------------------------


def _cluster_from_env(run_dir: Path) -> Cluster:
    return Cluster(
        run_dir,
        workers=int(os.environ.get("WORKERS") or 3),
        http_port=int(os.environ.get("HTTP_PORT") or 8080),
        redis_url=os.environ.get("REDIS_URL"),
        database_url=os.environ.get("DATABASE_URL"),
        async_mode=os.environ.get("ASYNC_MODE"),
        connections_per_address=int(
            os.environ.get("NGINX_CONNECTIONS_PER_ADDRESS") or DEFAULT_CONNECTIONS_PER_ADDRESS
        ),
        redis_mode=os.environ.get("REDIS") or None,
    )


def _print_started(cluster: Cluster) -> None:
    for w in cluster.workers:
        print(f"  {w.node_id}: {w.url} (pid {w.pid}, log {w.log_path})")
    private = cluster.redis or cluster.redis_cluster
    print(f"  redis: {redact(cluster.redis_url)}" + (" (private)" if private else ""))
    print(f"  database: {redact(cluster.database_url)}")
    print(f"  nginx logs: {cluster.nginx.access_log if cluster.nginx else '-'}")
    print(f"chat cluster of {len(cluster.workers)} workers ready at {cluster.url}", flush=True)


def _run_foreground(run_dir: Path) -> int:
    if stop_detached_needed(run_dir):
        raise ClusterError(f"a detached cluster runs from {run_dir}; `make cluster-down` first")
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    cluster = _cluster_from_env(run_dir)
    cluster.start()
    try:
        _print_started(cluster)
        print("Ctrl-C stops the cluster.", flush=True)
        reported: set[str] = set()
        while not stopping:
            time.sleep(0.5)
            for proc in cluster.processes():
                if not proc.alive() and proc.name not in reported:
                    reported.add(proc.name)
                    print(
                        f"{proc.name} exited with {proc.proc.returncode}; see {proc.log_path}",
                        file=sys.stderr,
                        flush=True,
                    )
            if cluster.nginx and not cluster.nginx.alive():
                return 1
    finally:
        print("stopping the cluster ...", flush=True)
        cluster.stop()
    return 0


def stop_detached_needed(run_dir: Path) -> bool:
    """True when a detached cluster recorded in `run_dir` still has a live process."""
    state_path = run_dir / STATE_FILE
    if not state_path.exists():
        return False
    entries = json.loads(state_path.read_text())["processes"]
    if any(_pid_runs(e) for e in entries):
        return True
    state_path.unlink()  # left over from a cluster that is gone
    return False


def main(argv: Sequence[str] | None = None) -> int:
    # prog: argparse would name the file (cluster.py), which is not how it is run. The
    # settings are environment variables, so --help shows the paragraph naming them.
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog="python -m testkit.cluster",
        description=doc.split("\n", 1)[0],
        epilog=next(p for p in doc.split("\n\n") if p.startswith("Settings")),
    )
    parser.add_argument("command", choices=["run", "up", "down", "status"])
    parser.add_argument(
        "--dir",
        default=os.environ.get("CLUSTER_DIR") or "run/cluster",
        help="run directory: config, logs, PIDs, SQLite file (run/cluster)",
    )
    args = parser.parse_args(argv)
    run_dir = Path(args.dir).resolve()
    try:
        if args.command == "run":
            return _run_foreground(run_dir)
        if args.command == "up":
            if stop_detached_needed(run_dir):
                state = json.loads((run_dir / STATE_FILE).read_text())
                print(f"a cluster already runs at {state['url']}; `make cluster-down` stops it")
                return 1
            cluster = _cluster_from_env(run_dir).start()
            _print_started(cluster)
            print("`make cluster-down` stops it.")
            return 0
        if args.command == "down":
            stopped = stop_detached(run_dir)
            print("stopped " + ", ".join(stopped) if stopped else f"no cluster runs from {run_dir}")
            return 0
        if stop_detached_needed(run_dir):
            state = json.loads((run_dir / STATE_FILE).read_text())
            running = [f"{e['name']} (pid {e['pid']})" for e in state["processes"] if _pid_runs(e)]
            print(f"cluster at {state['url']}: {', '.join(running)} running")
            return 0
        print(f"no cluster runs from {run_dir}")
        return 0
    except ProcessError as exc:  # ClusterError, a missing program, a process that exited
        print(f"cluster: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
