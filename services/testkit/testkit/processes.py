"""Start and stop real server processes (redis-server, chat workers) by PID."""

from __future__ import annotations

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
# A worker migrates and binds in about a second; 30 s covers a loaded CI machine.
START_TIMEOUT_SECONDS = 30


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


class RedisServer(ManagedProcess):
    """A private redis-server on a free port: safe to stop, restart or flush."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = require_program("redis-server")
        self.port = port or free_port()
        self.workdir = workdir
        super().__init__(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            None,
            workdir / f"redis-{self.port}.log",
        )
        import redis

        wait_for(lambda: redis.Redis(port=self.port).ping(), 10, f"redis-server on {self.port}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop this server and start a new one on the same port after `down_seconds`."""
        self.stop()
        time.sleep(down_seconds)
        self.__init__(self.workdir, self.port)


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


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
