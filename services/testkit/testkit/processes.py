"""The one code that starts and stops the project's server processes, by PID.

redis-server (one, or a Redis Cluster of several), chat workers (`python -m chat`), the Node
baseline peer, PostgreSQL (a private server, or a database on a shared one): the tests, the
local cluster launcher (testkit.cluster, behind `make cluster-up`) and the load test
(chatload.stack, chatload.campaign) all start them here, on free loopback ports, with their
output in a log file; each is stopped by the PID it was started with. Process figures (CPU,
memory, open files, children) come from psutil.

Errors: a program that is not installed raises MissingProgram (tests: `require_program`,
which skips or, under CI, fails); a process that exits while it is awaited, or a wait that
times out (WaitTimeout, also a TimeoutError), raise ProcessError with the log's tail.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil
import requests

REPO_ROOT = Path(__file__).resolve().parents[3]
NODE_PEER_DIR = REPO_ROOT / "loadtest" / "node-peer"
# Test harnesses register every user from 127.0.0.1 and create, join and read rooms far
# faster than a person, past the limits meant for people; the tests of each limit set their
# own value (a test's env wins over these).
HARNESS_LIMITS = {
    "RATE_LIMIT_REGISTRATIONS": "1000000",
    "RATE_LIMIT_JOINS": "1000000",
    "RATE_LIMIT_ROOM_CREATIONS": "1000000",
    "RATE_LIMIT_READS": "1000000",
}
# What a harness worker signs with (measure scripts that issue tokens themselves use it too).
HARNESS_SECRET_KEY = "test-secret-key-shared-by-all-workers"
# Settings that name one worker or one deployment: a worker gets them from whoever starts
# it, never inherited from that starter's own environment (a `make cluster` shell's REDIS_URL
# or WORKERS must not leak into a test's worker).
OWN_SETTINGS = ("DATABASE_URL", "REDIS_URL", "NODE_ID", "PORT", "HOST", "WORKERS", "SID_TAG")
# A worker migrates and binds in about a second; three importing gevent, Flask and SQLAlchemy
# at once on two busy cores take a few seconds; a minute covers a loaded CI machine without
# hiding a worker that never comes up.
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 10
# The green-thread libraries a production worker runs on (ASYNC_MODE); every protection the
# abuse tests check must hold under each.
ASYNC_MODES = ("gevent", "eventlet")
# Where Debian keeps programs a non-root PATH may lack (nginx).
SYSTEM_PATH = "/usr/sbin:/sbin"
# What to apt-get install for a missing program.
DEBIAN_PACKAGES = {
    "nginx": "nginx-light",
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
}

T = TypeVar("T")


class ProcessError(Exception):
    """A process could not be started, did not come up, or exited; the message says why."""


class MissingProgram(ProcessError):
    """A program a process needs is not installed; the message names how to install it."""


class WaitTimeout(ProcessError, TimeoutError):
    """A bounded wait ran out (a ProcessError for launchers, a TimeoutError for tests)."""


# --- helpers -----------------------------------------------------------------------------------


def find_program(name: str) -> str:
    """Absolute path of `name` on PATH (or /usr/sbin, /sbin); raises MissingProgram."""
    path = shutil.which(name) or shutil.which(name, path=SYSTEM_PATH)
    if path is None:
        package = DEBIAN_PACKAGES.get(name, name)
        raise MissingProgram(
            f"{name} is not installed: run `make system-deps` (as root) or "
            f"`apt-get install {package}`"
        )
    return path


def require_program(name: str) -> str:
    """find_program for tests: a missing program fails the test under CI, skips it elsewhere."""
    try:
        return find_program(name)
    except MissingProgram as exc:
        import pytest

        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports (nginx, then one per worker).

    Drawn from below the kernel's ephemeral range: a port checked free there may be taken a
    moment later as the source port of any outgoing connection (and every test client makes
    many), and then the worker cannot bind it. (The range is a sysctl, not process data:
    psutil has no call for it.)
    """
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32_768
    for _ in range(200):
        base = random.randrange(10_000, max(10_001, ephemeral_low - count))
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise ProcessError(f"no block of {count} free ports found")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call `predicate` until it returns a true value (returned) or `timeout` seconds pass.

    Any exception but a ProcessError counts as "not yet" (a server not listening yet); a
    ProcessError (the awaited process exited) ends the wait at once. Raises WaitTimeout
    naming `what` and the last error.
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except ProcessError:
            raise
        except Exception as exc:  # the thing is not up yet
            last_exc = exc
        time.sleep(interval)
    raise WaitTimeout(
        f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_exc})"
    )


def tail(text: str, lines: int = 30) -> str:
    """The last `lines` lines of a log, for error messages."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


# --- process figures (psutil) ------------------------------------------------------------------


def cpu_seconds(pid: int, tree: bool = False) -> float:
    """User + system CPU seconds of a process (with `tree`, plus its living descendants');
    0.0 for a process that is gone."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)] if tree else [proc]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    return psutil.Process(pid).memory_info().rss // 1024


def open_fds(pid: int) -> int:
    """Open file descriptors of a process."""
    return psutil.Process(pid).num_fds()


def started_at(pid: int) -> float | None:
    """When the process started (seconds since the epoch), or None when it is gone or a zombie.

    A PID plus its start time names one process for good: a PID the kernel has handed to a
    newer process since has another start time, so a stop by recorded PID never signals a
    stranger.
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.NoSuchProcess:
        return None


def same_process_runs(pid: int, started: float | None) -> bool:
    """Is the process recorded as (`pid`, `started`) still running?"""
    return started is not None and started_at(pid) == started


def stop_pid(pid: int, started: float | None, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
    """SIGTERM the recorded process, SIGKILL it after `timeout`; False if it was not running."""
    if not same_process_runs(pid, started):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while same_process_runs(pid, started) and time.monotonic() < deadline:
        time.sleep(0.1)
    if same_process_runs(pid, started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


# --- one process -------------------------------------------------------------------------------


class Process:
    """A child process: argv, environment, output appended to `log_path`, stopped by its PID.

    Constructing it starts nothing; start() does (and starts it again after stop or kill).
    """

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
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Its own session: Ctrl-C in a launcher's terminal reaches the launcher only, which
            # then stops everything in order; a detached cluster outlives its launcher.
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
            raise ProcessError(f"{self.name} was never started")
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
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns the exit code
        (None if it was never started)."""
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

    def tracebacks(self) -> int:
        """How many Python tracebacks the process has logged so far."""
        return self.log_text().count("Traceback (most recent call last)")

    def exited_error(self) -> ProcessError:
        return ProcessError(f"{self.name} exited:\n{tail(self.log_text())}")

    def rss_kb(self) -> int:
        """Resident memory, in KiB."""
        return rss_kib(self.pid)

    def open_fds(self) -> int:
        return open_fds(self.pid)

    def cpu_seconds(self, tree: bool = False) -> float:
        return cpu_seconds(self.pid, tree=tree)

    def describe(self) -> dict[str, Any]:
        """name, pid and start time: what a stop by recorded PID needs (stop_pid)."""
        return {"name": self.name, "pid": self.pid, "started": started_at(self.pid)}


class HttpServer(Process):
    """A process serving HTTP on 127.0.0.1:port with a /healthz that answers 200 when ready."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthz(self) -> requests.Response:
        return requests.get(self.url + "/healthz", timeout=3)

    def wait_healthy(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        def healthy() -> bool:
            if not self.alive():
                raise self.exited_error()
            return self.healthz().status_code == 200

        wait_for(healthy, timeout, f"{self.name} /healthz on port {self.port}", interval=0.1)


# --- redis-server ------------------------------------------------------------------------------


def _redis_options(port: int, workdir: Path) -> list[str]:
    """A redis-server on loopback that persists nothing (restarted, it is empty)."""
    return [
        *("--port", str(port), "--bind", "127.0.0.1"),
        *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
    ]


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner reads (a password must not be on a command line)."""
    path.touch(mode=0o600)
    path.write_text(text)


def redis_ping(port: int, password: str | None = None) -> bool:
    """Does the redis-server on `port` answer PING (after AUTH, given a password)?"""
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


class _RedisProcess(Process):
    """A redis-server process on `port`, with `password` or none."""

    port: int
    password: str | None

    def wait_ready(self, timeout: float = 10) -> None:
        def ready() -> bool:
            if not self.alive():
                raise self.exited_error()
            return redis_ping(self.port, self.password)

        wait_for(ready, timeout, f"redis-server on port {self.port}")

    def start_again(self) -> None:
        """Start the stopped server again on its port: a plain server comes back empty
        (nothing is saved), a cluster node with its saved node table."""
        self.start()
        self.wait_ready()


class RedisServer(_RedisProcess):
    """A private redis-server on a free port: safe to stop, restart, pause or flush.

    With a password it requires AUTH: whoever reaches Redis can publish into the message
    queue, that is emit into any room. The password is in a config file only its owner reads
    (not on the command line, which every local user can see) and in `url`. Started and
    awaited on construction unless `start=False`.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        password: str | None = None,
        *,
        name: str = "redis",
        log_path: Path | None = None,
        start: bool = True,
    ) -> None:
        self.port = port or free_port()
        self.workdir, self.password = workdir, password
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / f"redis-{self.port}.conf"
        _write_private(self.config, f"requirepass {password}\n" if password else "")
        super().__init__(
            name,
            [find_program("redis-server"), str(self.config), *_redis_options(self.port, workdir)],
            log_path or workdir / f"redis-{self.port}.log",
        )
        if start:
            self.start()
            self.wait_ready()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down for `down_seconds`, start again on the same port (empty)."""
        self.stop()
        time.sleep(down_seconds)
        self.start_again()

    def pause(self) -> None:
        """SIGSTOP: the server hangs; connections stay open and the kernel still accepts new
        ones, but nothing is answered (a hung server, unlike a stopped one)."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)


class RedisClusterNode(_RedisProcess):
    """One redis-server in cluster mode on a free port (its node table in `workdir`)."""

    def __init__(
        self,
        workdir: Path,
        *,
        name: str,
        password: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = free_port()
        # The cluster bus listens on its own free port (by default port + 10000, which may be
        # taken, or above 65535).
        self.bus_port = free_port()
        self.workdir, self.password = workdir, password
        workdir.mkdir(parents=True, exist_ok=True)
        # A node table left by an earlier run would make `--cluster create` refuse the node.
        (workdir / f"nodes-{self.port}.conf").unlink(missing_ok=True)
        config = workdir / f"redis-{self.port}.conf"
        _write_private(
            config, f"requirepass {password}\nmasterauth {password}\n" if password else ""
        )
        argv = [
            find_program("redis-server"),
            str(config),
            *_redis_options(self.port, workdir),
            *("--cluster-enabled", "yes", "--cluster-port", str(self.bus_port)),
            *("--cluster-config-file", f"nodes-{self.port}.conf"),
            # A stopped node's slots are unserved, not failed over: there are no replicas.
            *("--cluster-node-timeout", "5000"),
        ]
        super().__init__(name, argv, log_path or workdir / f"redis-{self.port}.log")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, password=self.password, decode_responses=True)

    def node_id(self) -> str:
        return self.client().execute_command("CLUSTER", "MYID")


class RedisCluster:
    """A real Redis Cluster of `primaries` private redis-servers (no replicas), by PID.

    `redis-cli --cluster create` spreads the 16384 slots over the nodes; `url` names them
    all in the `redis+cluster://` scheme the chat workers read (chat/cluster/topology.py).
    Every node requires `password`, given one. Started on construction.
    """

    def __init__(
        self,
        workdir: Path,
        primaries: int = 3,
        password: str | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.workdir, self.password = workdir, password
        self.nodes: list[RedisClusterNode] = []
        try:
            for i in range(1, primaries + 1):
                node = RedisClusterNode(
                    workdir,
                    name=f"redis-cluster-{i}",
                    password=password,
                    log_path=(log_dir / f"redis-cluster-{i}.log") if log_dir else None,
                )
                self.nodes.append(node)
                node.start()
                node.wait_ready()
            # redis-cli reads the password from the environment (not visible in `ps`).
            cli_env = {**os.environ, "REDISCLI_AUTH": password} if password else None
            out = subprocess.run(
                [
                    find_program("redis-cli"),
                    "--cluster",
                    "create",
                    *(n.address for n in self.nodes),
                    *("--cluster-replicas", "0", "--cluster-yes"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env=cli_env,
            )
            if out.returncode != 0:
                raise ProcessError(
                    f"redis-cli --cluster create failed:\n{tail(out.stdout + out.stderr)}"
                )
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis+cluster://{auth}" + ",".join(n.address for n in self.nodes)

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every running node reports cluster_state:ok and agrees on every slot."""

        def ok() -> bool:
            running = [n for n in self.nodes if n.alive()]
            infos = [n.client().execute_command("CLUSTER", "INFO") for n in running]
            if not all("cluster_state:ok" in i for i in infos):
                return False
            maps = [
                sorted(map(str, n.client().execute_command("CLUSTER", "SLOTS"))) for n in running
            ]
            return all(m == maps[0] for m in maps)

        wait_for(ok, timeout, "the redis cluster to be ok", interval=0.2)

    def owner(self, slot: int) -> RedisClusterNode:
        """The node that serves `slot` now (as the first node sees it)."""
        for start, end, primary, *_ in self.nodes[0].client().execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == int(primary[1]))
        raise LookupError(f"slot {slot} is not served")

    def move_slot(self, slot: int, to: RedisClusterNode) -> None:
        """Migrate one slot (keys included) to `to`, as `redis-cli --cluster reshard` does."""
        source = self.owner(slot)
        if source is to:
            return
        src, dst = source.client(), to.client()
        src_id, dst_id = source.node_id(), to.node_id()
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        auth = ("AUTH", self.password) if self.password else ()
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, *auth, "KEYS", *keys)
        for node in [to, source, *(n for n in self.nodes if n not in (to, source))]:
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        self.wait_ok()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


# --- chat workers ------------------------------------------------------------------------------


def worker_environment(env: Mapping[str, str] = (), *, harness: bool = True) -> dict[str, str]:
    """The environment of a chat worker: this process's own, less OWN_SETTINGS, then the
    defaults (loopback, gevent, unbuffered output; for a test harness also its SECRET_KEY and
    HARNESS_LIMITS), then `env` (which wins)."""
    inherited = {k: v for k, v in os.environ.items() if k not in OWN_SETTINGS}
    defaults = {"HOST": "127.0.0.1", "ASYNC_MODE": "gevent", "PYTHONUNBUFFERED": "1"}
    if harness:
        defaults |= {"SECRET_KEY": HARNESS_SECRET_KEY, **HARNESS_LIMITS}
    return {**inherited, **defaults, **dict(env)}


class ChatWorker(HttpServer):
    """The real chat worker process (`python -m chat`, as `make run` starts it).

    Listens on 127.0.0.1:`port` (a free one by default); its data (SQLite file, secrets) in
    `workdir` unless env says otherwise. `harness=True` (tests) adds the harness SECRET_KEY
    and HARNESS_LIMITS; the cluster launcher passes False and its own settings. Started on
    construction; with `wait`, returns once /healthz answers 200.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] = (),
        wait: bool = True,
        harness: bool = True,
        name: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        given = dict(env)
        self.node_id = given.get("NODE_ID", f"worker-{self.port}")
        full_env = worker_environment(
            {
                "PORT": str(self.port),
                "NODE_ID": self.node_id,
                "CHAT_DATA_DIR": str(workdir),
                **given,
            },
            harness=harness,
        )
        super().__init__(
            name or self.node_id,
            [sys.executable, "-m", "chat"],
            log_path or workdir / f"worker-{self.port}.log",
            env=full_env,
            cwd=REPO_ROOT,
        )
        self.start()
        if wait:
            self.wait_healthy()


# --- the Node baseline peer --------------------------------------------------------------------


class NodePeer(HttpServer):
    """The baseline Socket.IO peer (loadtest/node-peer/server.js), one process, on `redis_url`.

    Started and awaited on construction. Raises MissingProgram without node, ProcessError
    without its npm dependencies (`make peer-deps`).
    """

    def __init__(self, workdir: Path, redis_url: str, node_id: str) -> None:
        node = find_program("node")
        if not (NODE_PEER_DIR / "node_modules").is_dir():
            raise ProcessError("node-peer dependencies missing: run `make peer-deps`")
        self.port = free_port()
        self.node_id = node_id
        env = {**os.environ, "PORT": str(self.port), "REDIS_URL": redis_url, "NODE_ID": node_id}
        super().__init__(
            node_id, [node, "server.js"], workdir / f"{node_id}.log", env=env, cwd=NODE_PEER_DIR
        )
        self.start()
        self.wait_healthy(30)


# --- PostgreSQL --------------------------------------------------------------------------------


class PostgresDatabase:
    """A fresh database on an existing PostgreSQL server, dropped afterwards."""

    def __init__(self, server_url: str) -> None:
        import sqlalchemy as sa

        from chat.config import normalize_database_url

        self.name = f"chat_test_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        base = sa.engine.make_url(normalize_database_url(server_url))
        self._admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        self.url = base.set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        import sqlalchemy as sa

        with self._admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()


def _postgres_program(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if found:
        return str(found[-1])
    return find_program(name)


class PostgresServer:
    """A private PostgreSQL server (initdb + pg_ctl into a temporary directory, on a free port).

    Safe to stop and start: it is nobody else's. When run as root, the server runs as the
    `postgres` system user, since PostgreSQL refuses to run as root.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        # Its own directory under /tmp: pytest's tmp_path is private to root, and the
        # server may have to run as another user.
        self.root = temp_dir("chat-pg-")
        self.datadir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = [
                shutil.which("setpriv") or "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
            ]
        self.datadir.mkdir()
        self.log_path.touch()
        if self._as_user:
            for path in (self.root, self.datadir, self.log_path):
                shutil.chown(path, "postgres", "postgres")
        self._run(
            [
                _postgres_program("initdb"),
                *("-D", str(self.datadir), "-U", "postgres", "--auth=trust"),
                *("-E", "UTF8", "--no-instructions"),
            ]
        )
        self.start()
        import sqlalchemy as sa

        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text('CREATE DATABASE "chat"'))
        admin.dispose()

    def _run(self, argv: list[str]) -> None:
        subprocess.run(
            self._as_user + argv,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd="/tmp",
            timeout=120,
        )

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/chat"

    def start(self) -> None:
        # fsync off: this server holds throw-away test data, and the tests stop it on purpose.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir} "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            [
                _postgres_program("pg_ctl"),
                *("-D", str(self.datadir), "-l", str(self.log_path), "-o", options),
                *("-w", "-t", "60", "start"),
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (pg_ctl signals our own postmaster, by the PID in its data dir)."""
        if (self.datadir / "postmaster.pid").exists():
            self._run(
                [
                    _postgres_program("pg_ctl"),
                    *("-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop"),
                ]
            )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self) -> list[int]:
        """The postmaster and every process it started (backends, background workers)."""
        postmaster = int((self.datadir / "postmaster.pid").read_text().split()[0])
        try:
            proc = psutil.Process(postmaster)
            return [postmaster, *(p.pid for p in proc.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def freeze(self) -> None:
        """SIGSTOP the whole server: connections stay open and the kernel still accepts new
        ones, but nothing is answered (a hung server, unlike a stopped one)."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: int) -> None:
        if not (self.datadir / "postmaster.pid").exists():
            return
        for pid in self.pids():
            # A backend may have ended since it was listed.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def remove(self) -> None:
        """Stop the server at once and delete its directory."""
        self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)
