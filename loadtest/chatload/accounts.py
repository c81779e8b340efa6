"""Register the load test's users once and keep their tokens, so runs skip the registration storm.

    python -m chatload.accounts --target http://127.0.0.1:8080 --prefix bench --users 2000 \\
        --out loadtest/results/tokens.json

Registering hashes a password (argon2, ~20 ms of CPU each): 2,000 users joining at once
pushed joins past the 15 s connect timeout during ramp-up. Done once here, at a bounded
concurrency, the locust users then connect with the stored token (`--chat-tokens FILE`,
with `--chat-user-prefix` set to the same prefix). Users already in the file are skipped;
a user that exists already (409) is logged in instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from .scenario import user_name

DEFAULT_PASSWORD = "correct horse battery"
# Enough requests in flight to keep every worker's hashing thread busy, few enough that
# nobody waits long behind them.
DEFAULT_CONCURRENCY = 8


def register(
    target: str,
    prefix: str,
    users: int,
    tokens: dict[str, str],
    password: str,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> dict[str, str]:
    """Tokens of users 0..users-1 named with `prefix`, registering those not in `tokens`."""
    missing = [user_name(prefix, i) for i in range(users) if user_name(prefix, i) not in tokens]

    def one(name: str) -> tuple[str, str]:
        with requests.Session() as http:
            creds = {"username": name, "password": password}
            r = http.post(f"{target}/api/users", json=creds, timeout=60)
            if r.status_code not in (200, 201, 409):
                raise RuntimeError(f"registering {name}: {r.status_code} {r.text[:200]}")
            r = http.post(f"{target}/api/tokens", json=creds, timeout=60)
            r.raise_for_status()
            return name, r.json()["token"]

    with ThreadPoolExecutor(concurrency) as pool:
        for name, token in pool.map(one, missing):
            tokens[name] = token
    return tokens


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="base URL (nginx or one worker)")
    p.add_argument("--prefix", required=True)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--password", default=DEFAULT_PASSWORD)
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    args = p.parse_args(argv)
    tokens = json.loads(args.out.read_text()) if args.out.exists() else {}
    started = time.monotonic()
    before = len(tokens)
    register(
        args.target.rstrip("/"), args.prefix, args.users, tokens, args.password, args.concurrency
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(tokens))
    print(
        f"{len(tokens) - before} user(s) registered in {time.monotonic() - started:.1f} s; "
        f"{len(tokens)} token(s) in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
