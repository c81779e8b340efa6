"""Scenario parameters: locust custom arguments (also settable as LOCUST_CHAT_* env variables).

Every process of a distributed run reads the same values: the master sends its parsed
options to the workers with each spawn, including the derived ones set at test start.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

# The local cluster's nginx (make cluster-up): what `make loadtest` drives unless told otherwise.
DEFAULT_TARGET = "http://127.0.0.1:8080"
# The contract allows 1..4000 characters of text.
MAX_TEXT = 4000
# The smallest text that still carries the JSON stamp (run id, time, node, padding key).
MIN_TEXT = 96


def add_arguments(parser: Any) -> None:
    """Register the scenario's options on locust's argument parser."""
    parser.add_argument(
        "--chat-targets",
        default="",
        env_var="LOCUST_CHAT_TARGETS",
        help="Comma-separated base URLs; user i connects to targets[i %% n]. "
        "Default: --host (one URL, e.g. the cluster's nginx).",
    )
    parser.add_argument(
        "--chat-room-size",
        type=int,
        default=0,
        env_var="LOCUST_CHAT_ROOM_SIZE",
        help="0: one room of every user; N: rooms of N consecutive users.",
    )
    parser.add_argument(
        "--chat-room-sizes",
        default="",
        env_var="LOCUST_CHAT_ROOM_SIZES",
        help="Comma-separated room sizes taken in turn ('2,3,4': rooms of 2, 3, 4, 2, 3, "
        "4... consecutive users); overrides --chat-room-size.",
    )
    parser.add_argument(
        "--chat-settle",
        type=float,
        default=0.0,
        env_var="LOCUST_CHAT_SETTLE",
        include_in_web_ui=False,
        help="Seconds between the last join and the senders' start: a quiet moment in which "
        "the servers' counters can be read (the campaign's message-queue figures).",
    )
    parser.add_argument(
        "--chat-gc-freeze",
        default="on",
        choices=("on", "off"),
        env_var="LOCUST_CHAT_GC_FREEZE",
        include_in_web_ui=False,
        help="on: each process that runs users moves what it holds after the joins out of the "
        "garbage collector's view (gc.freeze) before the senders start, so that its full "
        "collections, 60-95 ms each, do not show in the fan-out latencies (chatload.tails).",
    )
    parser.add_argument(
        "--chat-senders",
        default="5",
        env_var="LOCUST_CHAT_SENDERS",
        help="How many users send: a count ('5') or a share of the users ('2%%'), "
        "spread evenly over the users (so over the rooms).",
    )
    parser.add_argument(
        "--chat-rate",
        type=float,
        default=4.0,
        env_var="LOCUST_CHAT_RATE",
        help="Messages per second per sender (locust constant_throughput).",
    )
    parser.add_argument(
        "--chat-message-size",
        type=int,
        default=128,
        env_var="LOCUST_CHAT_MESSAGE_SIZE",
        help=f"Characters of message text, {MIN_TEXT}..{MAX_TEXT} (JSON stamp + padding).",
    )
    parser.add_argument(
        "--chat-polling-share",
        type=float,
        default=0.0,
        env_var="LOCUST_CHAT_POLLING_SHARE",
        help="Share of users on HTTP long-polling instead of WebSocket (0..1).",
    )
    parser.add_argument(
        "--chat-duration",
        type=float,
        default=30.0,
        env_var="LOCUST_CHAT_DURATION",
        help="Headless: seconds of sending, counted from the moment every user has "
        "joined; then stop. 0: until --run-time or Ctrl-C.",
    )
    parser.add_argument(
        "--chat-grace",
        type=float,
        default=5.0,
        env_var="LOCUST_CHAT_GRACE",
        help="Seconds between the last send and counting what is missing.",
    )
    parser.add_argument(
        "--chat-run-id",
        default="",
        env_var="LOCUST_CHAT_RUN_ID",
        help="Prefix of this run's user and room names (default: random per test).",
    )
    parser.add_argument(
        "--chat-user-prefix",
        default="",
        env_var="LOCUST_CHAT_USER_PREFIX",
        include_in_web_ui=False,
        help="Prefix of the user names (default: the run id). A fixed prefix reuses the "
        "accounts of earlier runs (rooms stay per run).",
    )
    parser.add_argument(
        "--chat-tokens",
        default="",
        env_var="LOCUST_CHAT_TOKENS",
        include_in_web_ui=False,
        help="JSON file {username: token} written by `python -m chatload.accounts`: users "
        "found there connect with that token and skip REST sign-up (no registration storm).",
    )
    parser.add_argument(
        "--chat-password",
        default="correct horse battery",
        env_var="LOCUST_CHAT_PASSWORD",
        include_in_web_ui=False,
        help="Password of the users the test registers.",
    )
    parser.add_argument(
        "--chat-dms",
        action="store_true",
        default=False,
        env_var="LOCUST_CHAT_DMS",
        help="Pairs instead of rooms: users 2k and 2k+1 open their direct message "
        "(POST /api/dms) and talk there (--chat-room-size is ignored).",
    )
    parser.add_argument(
        "--chat-connect-timeout",
        type=float,
        default=15.0,
        env_var="LOCUST_CHAT_CONNECT_TIMEOUT",
        include_in_web_ui=False,
        help="Seconds a connect or join may take before it counts as failed.",
    )
    # Derived at test start by the coordinating process; not for the command line.
    parser.add_argument(
        "--chat-sender-count",
        type=int,
        default=-1,
        help="(derived)",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--chat-planned-users",
        type=int,
        default=0,
        env_var="LOCUST_CHAT_PLANNED_USERS",
        include_in_web_ui=False,
        help="Users to wait for before sending, and over which senders are spread. Default: "
        "the user count of the test (-u); set it with a LoadTestShape (its peak).",
    )
    parser.add_argument(
        "--chat-processes",
        type=int,
        default=1,
        help="(derived)",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--chat-active-run-id", default="", help="(derived)", include_in_web_ui=False
    )


def sender_count(spec: str, users: int) -> int:
    """'5' -> 5; '2%' -> 2 % of users (at least 1); never more than the users."""
    spec = spec.strip()
    if spec.endswith("%"):
        count = max(1, round(users * float(spec[:-1]) / 100)) if users else 0
    else:
        count = int(spec)
    return max(0, min(count, users))


def parse_room_sizes(spec: str) -> tuple[int, ...]:
    """'2,3,4' -> (2, 3, 4); '' -> (); every size at least 1."""
    sizes = tuple(int(part) for part in spec.split(",") if part.strip())
    if any(size < 1 for size in sizes):
        raise SystemExit(f"--chat-room-sizes takes sizes of at least 1, not {spec!r}")
    return sizes


def user_name(prefix: str, index: int) -> str:
    return f"{prefix}-u{index}"


def new_run_id() -> str:
    return f"lt{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Scenario:
    """The parameters one user needs, read from locust's parsed options."""

    targets: list[str]
    room_size: int
    senders: int
    planned_users: int
    rate: float
    message_size: int
    polling_share: float
    grace: float
    run_id: str
    user_prefix: str
    tokens_file: str
    password: str
    connect_timeout: float
    processes: int
    dms: bool = False
    room_sizes: tuple[int, ...] = ()

    @classmethod
    def from_options(cls, options: Any, host: str | None) -> Scenario:
        targets = [t.strip().rstrip("/") for t in options.chat_targets.split(",") if t.strip()]
        if not targets:
            targets = [(host or DEFAULT_TARGET).rstrip("/")]
        size = options.chat_message_size
        if not MIN_TEXT <= size <= MAX_TEXT:
            raise SystemExit(f"--chat-message-size must be {MIN_TEXT}..{MAX_TEXT}, not {size}")
        run_id = options.chat_active_run_id or options.chat_run_id or "lt"
        sizes = parse_room_sizes(getattr(options, "chat_room_sizes", "") or "")
        return cls(
            targets=targets,
            room_size=options.chat_room_size,
            senders=options.chat_sender_count,
            planned_users=options.chat_planned_users,
            rate=options.chat_rate,
            message_size=size,
            polling_share=options.chat_polling_share,
            grace=options.chat_grace,
            run_id=run_id,
            user_prefix=options.chat_user_prefix or run_id,
            tokens_file=options.chat_tokens,
            password=options.chat_password,
            connect_timeout=options.chat_connect_timeout,
            processes=max(1, options.chat_processes),
            dms=bool(getattr(options, "chat_dms", False)),
            room_sizes=sizes,
        )

    def username(self, index: int) -> str:
        """User `index`'s name: `python -m chatload.accounts` registers the same names."""
        return user_name(self.user_prefix, index)

    def room_of(self, index: int) -> str:
        """User `index`'s room: everybody's, or the index's block of room_size users.

        With room_sizes, blocks of those sizes in turn: (2, 3) puts users 0-1 in r0,
        2-4 in r1, 5-6 in r2...
        """
        if self.room_sizes:
            cycle = sum(self.room_sizes)
            turn, offset = divmod(index, cycle)
            for i, size in enumerate(self.room_sizes):
                if offset < size:
                    return f"{self.run_id}-r{turn * len(self.room_sizes) + i}"
                offset -= size
        if self.room_size <= 0:
            return f"{self.run_id}-all"
        return f"{self.run_id}-r{index // self.room_size}"

    def partner_of(self, index: int) -> str:
        """With --chat-dms: the user `index` talks to (2k with 2k+1)."""
        return self.username(index ^ 1)

    def is_sender(self, index: int) -> bool:
        """Senders are spread evenly over the planned users: where index*k/U steps up."""
        k, users = self.senders, self.planned_users
        if k <= 0 or users <= 0 or index >= users:
            return False
        return index == 0 or (index * k) // users != ((index - 1) * k) // users

    def transports(self, index: int) -> list[str]:
        """Long-polling for every 1/share-th user, spread evenly; WebSocket for the rest."""
        share = self.polling_share
        polling = share > 0 and math.floor((index + 1) * share) != math.floor(index * share)
        return ["polling"] if polling else ["websocket"]
