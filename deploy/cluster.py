"""Run N chat workers behind nginx on one machine: `make cluster`, `cluster-up`, `cluster-down`.

    python deploy/cluster.py run    # foreground; Ctrl-C or SIGTERM stops everything it started
    python deploy/cluster.py up     # detached; returns once every worker and nginx answer
    python deploy/cluster.py down   # stops a detached cluster by the PIDs it recorded
    python deploy/cluster.py status

Settings come from the environment (the make variables of deploy/cluster.mk): WORKERS (3),
HTTP_PORT (8080; workers on HTTP_PORT+1 .. HTTP_PORT+WORKERS), REDIS_URL (default: a private
redis-server on a free port; REDIS=cluster: a private 3-primary Redis Cluster), DATABASE_URL
(default: one SQLite file in WAL mode shared by all workers), ASYNC_MODE (passed through),
CLUSTER_DIR (run/cluster).

Tests and fault injection import it: `Cluster(run_dir, workers=3).start()` gives `.url` (nginx),
`.workers` (each with url, node_id, kill(), stop(), start()), `.nginx` and `.redis`.
Only the standard library and the venv's `requests` are used.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
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
# Three workers importing gevent, Flask and SQLAlchemy at once on two busy cores take a few
# seconds; a minute covers a loaded CI machine without hiding a worker that never comes up.
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 10
_PLACEHOLDER = re.compile(r"\$\{(CHAT_[A-Z_]+)\}")


class ClusterError(Exception):
    """The cluster could not be started or stopped; the message says why and what to do."""


# --- processes ---------------------------------------------------------------------------------


class Process:
    """A child process started by the launcher, output in a log file, stopped by its PID."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name, self.argv, self.log_path = name, list(argv), log_path
        self.env, self.cwd = dict(env) if env is not None else None, cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start (or start again, after stop/kill) the process; output appends to its log."""
        if self.alive():
            raise ClusterError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Its own session: Ctrl-C in the launcher's terminal reaches the launcher only, which
            # then stops everything in order; a detached cluster outlives the launcher.
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ClusterError(f"{self.name} was never started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, without any chance to clean up."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "started": _start_ticks(self.pid)}


class RedisServer(Process):
    """A private redis-server for this cluster only: safe to stop, kill or restart.

    The cluster's requires a password: whoever reaches Redis can publish into the message
    queue, that is emit into any room. The password is in a config file only its owner reads
    (not on the command line, which every local user can see) and in REDIS_URL. Without a
    password (a test's Sentinel master) it takes any client.
    """

    def __init__(self, run_dir: Path, port: int, password: str | None = None) -> None:
        self.port, self.dir, self.password = port, run_dir / "redis", password
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "redis.conf"
        config.touch(mode=0o600)
        config.write_text(f"requirepass {password}\n" if password else "")
        super().__init__(
            "redis",
            [
                require_program("redis-server"),
                str(config),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            run_dir / "logs" / "redis.log",
        )

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def wait_ready(self, timeout: float = 10) -> None:
        self.wait_port(self.port, self, timeout, self.password)

    @staticmethod
    def wait_port(
        port: int, process: Process, timeout: float = 10, password: str | None = None
    ) -> None:
        """Until the redis-server `process` answers PING on `port` (after AUTH, given one)."""

        def ready() -> bool:
            if not process.alive():
                raise ClusterError(f"redis-server exited:\n{tail(process.log_text())}")
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                auth = f"AUTH {password}\r\n" if password else ""
                s.sendall(f"{auth}PING\r\n".encode())
                expected = (b"+OK\r\n" if password else b"") + b"+PONG\r\n"
                answer = b""
                while len(answer) < len(expected):
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    answer += chunk
                return answer == expected

        wait_until(ready, timeout, f"redis-server on port {port}")

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down for `down_seconds`, start again on the same port (empty)."""
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.wait_ready()


class RedisClusterNodes:
    """A private Redis Cluster of `primaries` redis-servers (no replicas) on loopback.

    Each node gets two free ports (clients, cluster bus); `redis-cli --cluster create` spreads
    the 16384 slots over them. The workers get `redis+cluster://:pw@h:p,h:p,h:p` as REDIS_URL.
    Like the single RedisServer, every node requires the password (in a config file only its
    owner reads, not on a command line), given one. The cluster is created anew on every
    start: a node table left by an earlier run (other ports, other node ids) is removed, or
    `--cluster create` refuses the nodes as "not empty".
    """

    def __init__(self, run_dir: Path, primaries: int = 3, password: str | None = None) -> None:
        self.dir = run_dir / "redis-cluster"
        self.password = password
        self.nodes: list[Process] = []
        self.ports: list[int] = []
        for i in range(1, primaries + 1):
            port, bus_port = free_port(), free_port()
            node_dir = self.dir / f"node-{i}"
            node_dir.mkdir(parents=True, exist_ok=True)
            (node_dir / "nodes.conf").unlink(missing_ok=True)
            config = node_dir / "redis.conf"
            config.touch(mode=0o600)
            config.write_text(
                f"requirepass {password}\nmasterauth {password}\n" if password else ""
            )
            self.ports.append(port)
            self.nodes.append(
                Process(
                    f"redis-cluster-{i}",
                    [
                        require_program("redis-server"),
                        str(config),
                        *("--port", str(port), "--bind", "127.0.0.1"),
                        *("--cluster-enabled", "yes", "--cluster-port", str(bus_port)),
                        *("--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"),
                        *("--save", "", "--appendonly", "no", "--dir", str(node_dir)),
                    ],
                    run_dir / "logs" / f"redis-cluster-{i}.log",
                )
            )

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis+cluster://{auth}" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self, timeout: float = 30) -> None:
        for node, port in zip(self.nodes, self.ports, strict=True):
            node.start()
            RedisServer.wait_port(port, node, password=self.password)
        # redis-cli reads the password from the environment (not visible in `ps`).
        cli_env = {**os.environ, "REDISCLI_AUTH": self.password} if self.password else None
        out = subprocess.run(
            [
                require_program("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=cli_env,
        )
        if out.returncode != 0:
            raise ClusterError(
                f"redis-cli --cluster create failed:\n{tail(out.stdout + out.stderr)}"
            )

        def ok() -> bool:
            for port in self.ports:
                info = subprocess.run(
                    [require_program("redis-cli"), "-p", str(port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    env=cli_env,
                ).stdout
                if "cluster_state:ok" not in info:
                    return False
            return True

        wait_until(ok, timeout, "the redis cluster to be ok")


class Worker(Process):
    """One chat worker (`python -m chat`), listening on 127.0.0.1:port."""

    def __init__(self, index: int, port: int, env: Mapping[str, str], log_path: Path) -> None:
        self.index, self.port = index, port
        self.node_id = env["NODE_ID"]
        super().__init__(
            f"worker-{index}",
            [sys.executable, *WORKER_COMMAND[1:]],
            log_path,
            env=env,
            cwd=REPO_ROOT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthz(self) -> requests.Response:
        return requests.get(self.url + "/healthz", timeout=3)

    def wait_healthy(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        def healthy() -> bool:
            if not self.alive():
                raise ClusterError(f"{self.name} exited:\n{tail(self.log_text())}")
            return self.healthz().status_code == 200

        wait_until(healthy, timeout, f"{self.name} /healthz on port {self.port}")


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
        binary = require_program("nginx")
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

        wait_until(answers, timeout, f"nginx on port {self.port}")


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
        self.redis_cluster: RedisClusterNodes | None = None
        self.workers: list[Worker] = []
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

    def worker_by_node(self, node_id: str) -> Worker:
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
        require_program("nginx")
        if not self.given_redis_url:
            require_program("redis-server")
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
            self.redis_cluster = RedisClusterNodes(
                self.run_dir, password=self._kept_secret("redis_password")
            )
            self.redis_cluster.start()
        elif not self.given_redis_url:
            self.redis = RedisServer(self.run_dir, free_port(), self._kept_secret("redis_password"))
            self.redis.start()
            self.redis.wait_ready()
        self._prepare_database()
        env = self._worker_env()
        self.workers = [
            Worker(
                i,
                port,
                # The node id doubles as the SID_TAG nginx routes cookie-less sessions by.
                {**env, "PORT": str(port), "NODE_ID": f"worker-{i}", "SID_TAG": f"worker-{i}"},
                self.run_dir / "logs" / f"worker-{i}.log",
            )
            for i, port in enumerate(ports, start=1)
        ]
        for worker in self.workers:
            worker.start()
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
        env = {**self._worker_env(), "ASYNC_MODE": "threading"}
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
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "NODE_ID", "PORT", "HOST")
        }
        return {
            **inherited,
            "HOST": "127.0.0.1",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": self._secret_key(),
            "ASYNC_MODE": self.async_mode,
            "CHAT_DATA_DIR": str(self.run_dir / "data"),
            # Migrated once above; N workers racing to migrate one database would collide.
            "AUTO_MIGRATE": "0",
            # nginx appends the client's address to X-Forwarded-For (login throttling).
            "TRUSTED_PROXY_HOPS": "1",
            "PYTHONUNBUFFERED": "1",
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


# --- helpers -----------------------------------------------------------------------------------


def require_program(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        package = {"nginx": "nginx-light", "redis-server": "redis-server"}.get(name, name)
        raise ClusterError(
            f"{name} is not installed: run `make system-deps` (as root) or "
            f"`apt-get install {package}`"
        )
    return path


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Could a server listen on `port` now? (Connections of a stopped one in TIME_WAIT do not
    count: every server here sets SO_REUSEADDR, so does this check.)"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports (nginx, then one per worker).

    Drawn from below the kernel's ephemeral range: a port checked free there may be taken a
    moment later as the source port of any outgoing connection (and every test client makes
    many), and then the worker cannot bind it.
    """
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32_768
    for _ in range(200):
        base = random.randrange(10_000, max(10_001, ephemeral_low - count))
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise ClusterError(f"no block of {count} free ports found")


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except ClusterError:
            raise
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(interval)
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def redact(url: str) -> str:
    """A URL without its password, for logs and state files."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None when it is gone or a zombie.

    A PID plus its start time names one process for good: a PID the kernel has handed to a
    newer process since has another start time, so `down` never signals a stranger.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name in (...) may hold spaces
    return None if fields[0] == "Z" else int(fields[19])


def _pid_runs(entry: Mapping[str, Any]) -> bool:
    """Is the process recorded in a state entry still running?"""
    return entry["started"] is not None and _start_ticks(entry["pid"]) == entry["started"]


def stop_detached(run_dir: Path) -> list[str]:
    """Stop a cluster started by `up`, by the PIDs in its state file; returns what was stopped."""
    state_path = run_dir / STATE_FILE
    if not state_path.exists():
        return []
    stopped = []
    for entry in reversed(json.loads(state_path.read_text())["processes"]):
        pid = entry["pid"]
        if not _pid_runs(entry):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while _pid_runs(entry) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_runs(entry):
            os.kill(pid, signal.SIGKILL)
        stopped.append(f"{entry['name']} (pid {pid})")
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
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
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
