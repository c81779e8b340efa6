"""Measure one periodic session check (`SessionGuard.check`) at N open sockets.

    .venv/bin/python deploy/scripts/session_check_costs.py --db sqlite|postgresql \
        [--sockets 8000] [--principals 8] [--checks 50] [--postgres URL]

Builds the app (threading mode, no Redis) on a fresh database (a SQLite file in a temporary
directory, or a new database on the PostgreSQL server at --postgres, dropped at the end),
inserts --principals users (no argon2: a placeholder hash), gives the namespace --sockets open
sockets spread round-robin over one live token per user (so 8 principals and 8,000 sockets
is 1,000 tabs per token), and times --checks calls of `SessionGuard.check()` (nothing ended,
so nothing is emitted) after a first check timed on its own: wall ms per check, and this
process's CPU ms per check (the worker's own cost; PostgreSQL's server process is not
counted). "CPU % at 2 s" = CPU ms / 2,000 ms. --changes N: before each check (untimed), N
other users with no socket here log out everywhere, so the check reads the changes.
--full-every N: every N-th check looks every token up in full (default: the code's
accounts.FULL_CHECK_EVERY); 1 times full checks only; the mean is then the amortised cost.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from chat import create_app
from chat.domain import accounts
from chat.domain.accounts import Principal
from chat.extensions import db
from chat.models import User


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgresql"], required=True)
    ap.add_argument("--sockets", type=int, default=8000)
    ap.add_argument("--principals", type=int, default=8)
    ap.add_argument("--checks", type=int, default=50)
    ap.add_argument(
        "--changes",
        type=int,
        default=0,
        help="before each timed check, end the sessions of this many users with no socket here",
    )
    ap.add_argument(
        "--full-every",
        type=int,
        default=accounts.FULL_CHECK_EVERY,
        help="every this many checks is a full one (1: all of them)",
    )
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pg = None
        if args.db == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'chat.db'}"
        else:
            from testkit.processes import PostgresDatabase

            pg = PostgresDatabase(args.postgres)
            url = pg.url
        try:
            print(json.dumps(run(url, args)))
        finally:
            if pg is not None:
                pg.drop()


def run(url: str, args: argparse.Namespace) -> dict:
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "SQLALCHEMY_ENGINE_OPTIONS": {},
            "ASYNC_MODE": "threading",
            "REDIS_URL": None,
            "SECRET_KEY": "bench-secret-of-at-least-32-characters",
            "NODE_ID": "bench",
        }
    )
    guard = app.extensions["chat.sessions"]
    namespace = app.extensions["chat.namespace"]
    namespace.principals.full_every = args.full_every
    now_ms = int(time.time() * 1000)
    with app.app_context():
        db.session.execute(
            insert(User),
            [
                {"username": f"bench{i}", "password_hash": "x", "tokens_valid_after": 0}
                for i in range(args.principals + args.changes)
            ],
        )
        db.session.commit()
        users = db.session.execute(
            db.select(User.id, User.username).where(User.username.startswith("bench"))
        ).all()
        db.session.rollback()
    elsewhere = [Principal(uid, name) for uid, name in users[args.principals :]]
    tokens = [
        Principal(uid, name, secrets.token_hex(16), now_ms)
        for uid, name in users[: args.principals]
    ]
    for n in range(args.sockets):
        namespace.principals[f"sid{n}"] = tokens[n % len(tokens)]
    # The first check: with the session clock (0004) it looks every token up in full, as a
    # worker does after it starts; later ones read only what changed.
    w0, c0 = time.perf_counter(), time.process_time()
    assert guard.check() == []
    first_cpu, first_wall = (time.process_time() - c0) * 1000, (time.perf_counter() - w0) * 1000
    walls, cpus = [], []
    for _ in range(args.checks):
        if elsewhere:  # not timed: other workers' logouts
            with app.app_context():
                for principal in elsewhere:
                    accounts.end_all_sessions(principal)
        w0, c0 = time.perf_counter(), time.process_time()
        ended = guard.check()
        cpus.append((time.process_time() - c0) * 1000)
        walls.append((time.perf_counter() - w0) * 1000)
        assert ended == []
    cpu = statistics.median(cpus)
    return {
        "db": args.db,
        "sockets": args.sockets,
        "principals": args.principals,
        "checks": args.checks,
        "changes_per_check": args.changes,
        "full_every": args.full_every,
        "first_check_wall_ms": round(first_wall, 3),
        "first_check_cpu_ms": round(first_cpu, 3),
        "wall_ms_median": round(statistics.median(walls), 3),
        "wall_ms_mean": round(statistics.fmean(walls), 3),
        "cpu_ms_median": round(cpu, 3),
        "cpu_ms_mean": round(statistics.fmean(cpus), 3),
        "cpu_pct_of_core_at_2s": round(cpu / 2000 * 100, 4),
        "python": sys.version.split()[0],
    }


if __name__ == "__main__":
    main()
