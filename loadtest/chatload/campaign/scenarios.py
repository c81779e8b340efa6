"""The campaign's scenarios: one locust run against one server set-up each, by name."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from testkit.processes import REPO_ROOT

LOADTEST_DIR = REPO_ROOT / "loadtest"


@dataclass(frozen=True)
class Scenario:
    """One locust run against one server set-up."""

    name: str
    servers: str = "chat"  # chat (through nginx) | node (direct)
    workers: int = 3
    async_mode: str = "gevent"
    users: int = 1000
    senders: int = 5
    rate: float = 4.0  # per sender
    duration: float = 30
    grace: float = 5
    spawn_rate: float = 100
    message_size: int = 128
    locust_processes: int = 2  # 1: one process; N > 1: --processes N
    profile: bool = False  # py-spy record of the first server process while senders send
    # chat only: the users connect straight to the workers (round-robin), as the Node peer's
    # users do, instead of through nginx; WebSocket-only users need no affinity.
    direct: bool = False
    env: dict[str, str] = field(default_factory=dict)  # extra worker environment
    room_sizes: str = ""  # rooms of these sizes in turn ('2,3,4'); else one room of everybody
    # chat only: "single" (one private redis-server) or "cluster" (a private 3-primary Redis
    # Cluster, the launcher's REDIS=cluster).
    redis: str = "single"
    # The message queue's figures (mq.md): each worker's chat_mq_* metrics read in a quiet
    # moment before the senders start (--chat-settle) and after the last delivery, and each
    # worker's and each Redis node's CPU in the send window.
    mq: bool = False
    settle: float = 0  # seconds between the last join and the senders' start
    # Every delivery and ack recorded into <run>/deliveries (chatload.tails reads them).
    delivery_log: bool = False

    @property
    def setup(self) -> tuple:
        """Scenarios with equal keys run on one set-up, started once."""
        return (
            self.servers,
            self.workers,
            self.async_mode,
            self.redis,
            tuple(sorted(self.env.items())),
        )


# The worker environment of the single-channel comparison (the patch below reads it).
SINGLE_CHANNEL = {"MQ_BENCH_SINGLE_CHANNEL": "1"}
SINGLE_CHANNEL_PATCH = LOADTEST_DIR / "patches" / "single-channel-manager.patch"


def require_single_channel_patch() -> None:
    """The single-channel scenarios measure nothing new without the patch: refuse them."""
    source = REPO_ROOT / "services" / "chat" / "chat" / "cluster" / "mq.py"
    if "class SingleChannelBench" not in source.read_text():
        raise SystemExit(
            f"the *-1ch scenarios need the benchmark-only manager: git apply {SINGLE_CHANNEL_PATCH}"
            " (and git checkout the two files after the campaign)"
        )


def peer(sc: Scenario) -> Scenario:
    """The same run against the Node peer (`peer-<name>`)."""
    return replace(sc, name=f"peer-{sc.name}", servers="node")


def on_redis_cluster(sc: Scenario) -> Scenario:
    """The same run on a private 3-primary Redis Cluster (`<name>-cluster`)."""
    return replace(sc, name=f"{sc.name}-cluster", redis="cluster")


def single_channel(sc: Scenario) -> Scenario:
    """The same run on the single-channel design (`<name>-1ch`): every emit on one channel
    every worker hears, on otherwise the same code. Needs SINGLE_CHANNEL_PATCH applied to the
    worktree (a benchmark-only manager, never part of the product)."""
    return replace(sc, name=f"{sc.name}-1ch", env=SINGLE_CHANNEL)


# 5. The message queue (issue 15): per-room channels on Redis sharded pub/sub. 6 workers;
# 600 rooms of 2, 3, 4 members (1,800 users, one sender per room at 0.2 msg/s: 120 msg/s),
# and the 1,000-member room at 10 msg/s.
MQ_RUNS = (
    Scenario(
        "mq-small-600",
        workers=6,
        users=1800,
        room_sizes="2,3,4",
        senders=600,
        rate=0.2,
        duration=30,
        # 100/s left 500 of 1,800 joins past their 15 s on this 2-core box: a member whose
        # join timed out but went through is one the count cannot place.
        spawn_rate=40,
        mq=True,
        settle=4,
    ),
    Scenario(
        "mq-room-1000", workers=6, users=1000, rate=2, duration=30, spawn_rate=50, mq=True, settle=4
    ),
)
# A few seconds, to check the message-queue figures themselves.
MQ_SMOKE = Scenario(
    "mq-smoke",
    workers=3,
    users=27,
    room_sizes="2,3,4",
    senders=9,
    rate=1,
    duration=5,
    grace=3,
    spawn_rate=27,
    locust_processes=1,
    mq=True,
    settle=3,
)


def _scenarios() -> list[Scenario]:
    smoke = Scenario("smoke", users=20, duration=5, grace=2, locust_processes=1, spawn_rate=20)
    # A few seconds, to check the campaign itself.
    out: list[Scenario] = [smoke, peer(smoke)]
    # 1. Room size at a fixed rate (5 senders x 4 msg/s), 3 workers.
    for members in (100, 500, 1000, 2000):
        sc = Scenario(f"size-{members}", users=members)
        out += [sc, peer(sc)]
    # 1a. Each message's fixed cost: a room of just the 5 senders (4 deliveries a message).
    fixed = Scenario("fixed-5", users=5, locust_processes=1, spawn_rate=5)
    out += [fixed, peer(fixed), replace(fixed, name="profile-fixed-5", profile=True)]
    # 1b. Saturation: raise the rate at 1,000 members (per-sender rates; 5 senders).
    rates = (1, 2, 6, 8, 10, 15, 20)
    for rate in rates:
        sc = Scenario(f"rate-1000-{rate * 5}", users=1000, rate=rate, duration=20)
        out += [sc, peer(sc)]
    for members in (100, 500, 2000):
        for rate in rates:
            sc = Scenario(f"rate-{members}-{rate * 5}", users=members, rate=rate, duration=20)
            out += [peer(sc), sc]
    # 2. The 1,000-member room on 1, 2, 3 workers, at 20 msg/s and below saturation (10).
    for workers in (1, 2, 3):
        sc = Scenario(f"workers-{workers}", workers=workers)
        out += [sc, peer(sc)]
        for rate in (1, 2):
            sc = Scenario(f"workers-{workers}-r{rate * 5}", workers=workers, rate=rate, duration=20)
            out += [sc, peer(sc)]
    # 1c. The same without nginx on the chat's path, for a like-for-like saturation figure
    # (and at 10 msg/s, below the load generator's saturation on a slower box).
    out.append(Scenario("direct-size-1000", users=1000, direct=True))
    for rate in (2, 10, 15):
        out.append(
            Scenario(
                f"direct-rate-1000-{rate * 5}", users=1000, rate=rate, duration=20, direct=True
            )
        )
    # 3. Profile of one worker under load.
    out.append(Scenario("profile-1000", profile=True, duration=30))
    # 5. The message queue: on one Redis, on a 3-node Redis Cluster, on the single channel.
    out += MQ_RUNS
    out += [on_redis_cluster(sc) for sc in MQ_RUNS]
    out += [single_channel(sc) for sc in MQ_RUNS]
    out += [MQ_SMOKE, on_redis_cluster(MQ_SMOKE), single_channel(MQ_SMOKE)]
    # 4. eventlet.
    out.append(Scenario("eventlet-1000", async_mode="eventlet"))
    out.append(Scenario("eventlet-1000-r10", async_mode="eventlet", rate=2, duration=20))
    out.append(Scenario("eventlet-100", async_mode="eventlet", users=100))
    return out


SCENARIOS = {s.name: s for s in _scenarios()}
