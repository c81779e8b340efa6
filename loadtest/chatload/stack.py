"""Start servers to load on a private redis-server, run a command against them, stop them.

    python -m chatload.stack --servers chat --workers 2 --async-mode gevent -- CMD ...
    python -m chatload.stack --servers node --workers 2            # hold until Ctrl-C

CMD runs with LOADTEST_TARGETS set to the servers' base URLs, comma-separated (the locust
users spread over them: that is how a run gets same-node and cross-node deliveries without
nginx). Every process is ours, started and stopped by PID; logs stay in --workdir.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from testkit.processes import (
    REPO_ROOT,
    ChatWorker,
    NodePeer,
    PostgresDatabase,
    Process,
    RedisServer,
)

LOADTEST_DIR = REPO_ROOT / "loadtest"
# The server's own limit (30 per 10 s) is for people; a load test's senders outpace it on
# purpose, so the stack lifts it out of the way.
LOAD_RATE_LIMIT = "1000000"
# Every limit a load test runs into by design: messages, registrations (thousands of users
# from one address), and the joins, room and DM creations and read markers they make.
LOAD_LIMITS = {
    name: LOAD_RATE_LIMIT
    for name in (
        "RATE_LIMIT_MESSAGES",
        "RATE_LIMIT_REGISTRATIONS",
        "RATE_LIMIT_JOINS",
        "RATE_LIMIT_ROOM_CREATIONS",
        "RATE_LIMIT_READS",
    )
}
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


class Stack:
    """A private redis-server and N servers of one kind on it; stop() ends all of them."""

    def __init__(
        self,
        workdir: Path,
        servers: str,
        workers: int,
        async_mode: str,
        database: str,
        extra_env: dict[str, str],
    ) -> None:
        self.workdir = workdir
        self.processes: list[Process] = []
        self.database: PostgresDatabase | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.redis = RedisServer(workdir)
            self.processes.append(self.redis)
            if servers == "node":
                for i in range(workers):
                    self.processes.append(NodePeer(workdir, self.redis.url, f"peer-{i + 1}"))
            else:
                env = {
                    "REDIS_URL": self.redis.url,
                    "ASYNC_MODE": async_mode,
                    **LOAD_LIMITS,
                    **extra_env,
                }
                if database == "postgresql":
                    self.database = PostgresDatabase(
                        os.environ.get("POSTGRES_URL", DEFAULT_POSTGRES)
                    )
                    env["DATABASE_URL"] = self.database.url
                for i in range(workers):
                    # Started one after the other: the first one migrates the database.
                    self.processes.append(
                        ChatWorker(workdir, env={**env, "NODE_ID": f"{async_mode}-{i + 1}"})
                    )
        except BaseException:
            self.stop()
            raise

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.processes if not isinstance(p, RedisServer)]

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop()
        if self.database is not None:
            self.database.drop()
            self.database = None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", choices=["chat", "node"], default="chat")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--async-mode", choices=["gevent", "eventlet"], default="gevent")
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument(
        "--workdir",
        type=Path,
        default=LOADTEST_DIR / "results" / f"stack-{time.strftime('%Y%m%d-%H%M%S')}",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the chat workers",
    )
    args = p.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env)
    stack = Stack(args.workdir, args.servers, args.workers, args.async_mode, args.database, extra)
    targets = ",".join(stack.urls)
    # Everything after the start is inside the try: even a failed print (a closed pipe)
    # must stop what was started.
    try:
        print(
            f"stack up ({args.servers} x{args.workers}"
            f"{', ' + args.async_mode if args.servers == 'chat' else ''}): {targets}; "
            f"redis {stack.redis.url}; logs in {args.workdir}",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        if not command:
            while True:
                time.sleep(3600)
        child = subprocess.Popen(command, env={**os.environ, "LOADTEST_TARGETS": targets})
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                # Ctrl-C reached the command too (same process group): let it finish its report.
                continue
    except KeyboardInterrupt:
        return 130
    finally:
        stack.stop()
        with contextlib.suppress(OSError):
            print("stack stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
