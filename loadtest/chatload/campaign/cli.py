"""The campaign's command line: pick scenarios, run each on its set-up, append to the table."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import time
from dataclasses import asdict, replace
from pathlib import Path

from testkit.processes import PostgresDatabase

from .. import mq
from ..accounts import DEFAULT_PASSWORD, register
from ..stack import DEFAULT_POSTGRES
from .measure import USER_PREFIX, load_average, run_one
from .scenarios import LOADTEST_DIR, SCENARIOS, require_single_channel_patch
from .setup import Setup
from .table import HEADER, saturated, table_row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m chatload.campaign",
        description="The benchmark campaign: run a list of scenarios, one bounded locust run "
        "each, into one table.",
    )
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
    p.add_argument(
        "--delivery-log",
        action="store_true",
        help="record every delivery and ack into <run>/deliveries (python -m chatload.tails)",
    )
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
    if args.delivery_log:
        scenarios = [replace(s, delivery_log=True) for s in scenarios]

    # Absolute: locust runs from the repository root, and reads the tokens file from here.
    out: Path = args.out.resolve()
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
