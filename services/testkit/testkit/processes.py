"""Start and stop real server processes (redis-server, chat workers) by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[3]
# Test harnesses register every user from 127.0.0.1 and create, join and read rooms far
# faster than a person, past the limits meant for people; the tests of each limit set their
# own value (a test's env wins over these).
HARNESS_LIMITS = {
    "RATE_LIMIT_REGISTRATIONS": "1000000",
    "RATE_LIMIT_JOINS": "1000000",
    "RATE_LIMIT_ROOM_CREATIONS": "1000000",
    "RATE_LIMIT_READS": "1000000",
}
# A worker migrates and binds in about a second; 30 s covers a loaded CI machine.
START_TIMEOUT_SECONDS = 30
# The green-thread libraries a production worker runs on (ASYNC_MODE); every protection the
# abuse tests check must hold under each.
ASYNC_MODES = ("gevent", "eventlet")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_program(name: str) -> str:
    """Path of a program the test needs; fails under CI, skips elsewhere, naming what is missing."""
    path = shutil.which(name)
    if path:
        return path
    import pytest

    message = f"{name} is not installed (make test installs it with apt when run as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # the thing is not up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what} (last error: {last_exc})")


class ManagedProcess:
    """A child process we started, with its output in a log file; stopped by PID."""

    def __init__(
        self,
        argv: list[str],
        env: Mapping[str, str] | None,
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tracebacks(self) -> int:
        """How many Python tracebacks the process has logged so far."""
        return self.log_text().count("Traceback (most recent call last)")

    def rss_kb(self) -> int:
        """Resident memory of the process, in KiB (Linux /proc)."""
        return process_rss_kb(self.pid)

    def open_fds(self) -> int:
        """Open file descriptors of the process (Linux /proc)."""
        return process_open_fds(self.pid)

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the process dies without any chance to clean up."""
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.proc.returncode


def process_rss_kb(pid: int) -> int:
    """Resident memory of a process, in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def process_open_fds(pid: int) -> int:
    """Open file descriptors of a process (Linux /proc)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _redis_argv(binary: str, port: int, workdir: Path, *extra: str) -> list[str]:
    """A redis-server on loopback that persists nothing (tests restart it empty)."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        *extra,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]


def _wait_for_redis(port: int) -> None:
    import redis

    wait_for(lambda: redis.Redis(port=port).ping(), 10, f"redis-server on {port}")


class RedisServer(ManagedProcess):
    """A private redis-server on a free port: safe to stop, restart or flush."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = require_program("redis-server")
        self.port = port or free_port()
        self.workdir = workdir
        super().__init__(
            _redis_argv(binary, self.port, workdir), None, workdir / f"redis-{self.port}.log"
        )
        _wait_for_redis(self.port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop this server and start a new one on the same port after `down_seconds`."""
        self.stop()
        time.sleep(down_seconds)
        self.start_again()

    def start_again(self) -> None:
        """Start a stopped server again on the same port (an empty one: nothing is saved)."""
        self.__init__(self.workdir, self.port)

    def pause(self) -> None:
        """SIGSTOP: the server hangs; connections stay open and the kernel still accepts new
        ones, but nothing is answered (a hung server, unlike a stopped one)."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)


class RedisClusterNode(ManagedProcess):
    """One redis-server in cluster mode on a free port (its node table in `workdir`)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = require_program("redis-server")
        self.port = port or free_port()
        # The cluster bus listens on its own free port (by default port + 10000, which may be
        # taken, or above 65535).
        self.bus_port = getattr(self, "bus_port", None) or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        argv = _redis_argv(
            binary,
            self.port,
            workdir,
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(self.bus_port),
            "--cluster-config-file",
            f"nodes-{self.port}.conf",
            # A stopped node's slots are unserved, not failed over: there are no replicas.
            "--cluster-node-timeout",
            "5000",
        )
        super().__init__(argv, None, workdir / f"redis-{self.port}.log")
        _wait_for_redis(self.port)

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self):
        import redis

        return redis.Redis(port=self.port, decode_responses=True)

    def node_id(self) -> str:
        return self.client().execute_command("CLUSTER", "MYID")

    def start_again(self) -> None:
        """Start the stopped node again on its port; it rejoins with its saved node table."""
        self.__init__(self.workdir, self.port)


class RedisCluster:
    """A real Redis Cluster of `primaries` private redis-servers (no replicas), by PID.

    `redis-cli --cluster create` spreads the 16384 slots over the nodes; `url` names them
    all in the `redis+cluster://` scheme the chat workers read (chat/cluster/topology.py).
    """

    def __init__(self, workdir: Path, primaries: int = 3) -> None:
        self.workdir = workdir
        self.nodes: list[RedisClusterNode] = []
        try:
            for _ in range(primaries):
                self.nodes.append(RedisClusterNode(workdir))
            subprocess.run(
                [
                    require_program("redis-cli"),
                    "--cluster",
                    "create",
                    *(n.name for n in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.name for n in self.nodes)

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
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *keys)
        for node in [to, source, *(n for n in self.nodes if n not in (to, source))]:
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        self.wait_ok()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class ChatWorker(ManagedProcess):
    """The real chat worker process (`python -m chat`, as `make run` starts it)."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] = (),
        wait: bool = True,
    ) -> None:
        self.port = port or free_port()
        self.node_id = dict(env).get("NODE_ID", f"worker-{self.port}")
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "NODE_ID", "WORKERS")
        }
        full_env = {
            **inherited,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "NODE_ID": self.node_id,
            "CHAT_DATA_DIR": str(workdir),
            "SECRET_KEY": "test-secret-key-shared-by-all-workers",
            "ASYNC_MODE": "gevent",
            "PYTHONUNBUFFERED": "1",
            **HARNESS_LIMITS,
            **dict(env),
        }
        super().__init__(
            [sys.executable, "-m", "chat"], full_env, workdir / f"worker-{self.port}.log"
        )
        if wait:
            self.wait_healthy()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        def healthy() -> bool:
            if not self.alive():
                raise RuntimeError(f"worker exited early:\n{self.log_text()[-3000:]}")
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200

        wait_for(healthy, timeout, f"chat worker on {self.port}")


class PostgresDatabase:
    """A fresh database on an existing PostgreSQL server, dropped afterwards."""

    def __init__(self, server_url: str) -> None:
        import sqlalchemy as sa

        self.name = f"chat_test_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        from chat.config import normalize_database_url

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
    return require_program(name)


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
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
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
                "-D",
                str(self.datadir),
                "-l",
                str(self.log_path),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (pg_ctl signals our own postmaster, by the PID in its data dir)."""
        if (self.datadir / "postmaster.pid").exists():
            self._run(
                [
                    _postgres_program("pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    "60",
                    "stop",
                ]
            )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self) -> list[int]:
        """The postmaster and every process it started (backends, background workers)."""
        postmaster = int((self.datadir / "postmaster.pid").read_text().split()[0])
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        out, todo = [], [postmaster]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

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


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
