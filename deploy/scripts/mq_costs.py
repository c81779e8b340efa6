"""Measure the message queue's cost constants on this machine (deploy/README.md, cost model).

    .venv/bin/python deploy/scripts/mq_costs.py [--emits 5000]

Starts a private redis-server on a free port (stopped by PID at the end) and measures:
- listener CPU per emit received (decode + python-socketio's dispatch; the local fan-out is
  stubbed out), under gevent, for chat's ShardedRedisManager (a room with a local member) and
  for python-socketio's RedisManager (a room with NO local member: what every worker paid
  for every emit on the one shared channel);
- Redis CPU per SPUBLISH with 0, 1, 4 and 16 subscribers, and per SSUBSCRIBE/SUNSUBSCRIBE
  (INFO commandstats usec_per_call: the command alone);
- the redis-server process's whole CPU per SPUBLISH with 0, 1, 4 and 16 subscribers (psutil:
  reading the request and writing every subscriber's copy included), over --publishes.
redis-py uses hiredis when it is installed (a dependency); to measure without it, hide it:
`PYTHONPATH=DIR` where DIR/hiredis/__init__.py raises ImportError.
Figures are CPU time, so a loaded machine inflates them less than wall time, but not by zero.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LISTENER = textwrap.dedent(
    """
    from gevent import monkey; monkey.patch_all()
    import json, sys, time
    import socketio, socketio.manager
    mode, url, emits = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen = [0, 0.0, 0.0]
    def count(*a, **k):
        seen[0] += 1
        if seen[0] == 1: seen[1] = time.process_time()
        if seen[0] == emits: seen[2] = time.process_time()
    if mode == "sharded":
        from chat.cluster.mq import ShardedRedisManager
        m = ShardedRedisManager(url)
        socketio.manager.Manager.emit = lambda *a, **k: count()
        s = socketio.Server(client_manager=m, async_mode="gevent"); m.initialize()
        m.connect("e1", "/"); m.enter_room(m.sid_from_eio_sid("e1", "/"), "/", "room:bench")
    else:
        # The room has no member here: python-socketio decodes, then finds nobody to send to.
        m = socketio.RedisManager(url)
        s = socketio.Server(client_manager=m, async_mode="gevent"); m.initialize()
        original = m._handle_emit
        def handle(message): original(message); count()
        m._handle_emit = handle
    print("ready", flush=True)
    while seen[0] < emits: time.sleep(0.05)
    print(json.dumps({"us_per_emit": (seen[2] - seen[1]) / (emits - 1) * 1e6}), flush=True)
    """
)


def listener_cost(mode: str, url: str, emits: int) -> float:
    import redis

    from chat.cluster.mq import room_channel

    proc = subprocess.Popen(
        [sys.executable, "-c", LISTENER, mode, url, str(emits)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT / "services" / "chat",
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # the subscriptions confirmed
        client = redis.Redis.from_url(url)
        envelope = {
            "method": "emit", "event": "message", "binary": False, "namespace": "/",
            "room": "room:bench", "skip_sid": None, "callback": None, "host_id": "bench",
            "data": [{"id": 1, "room": "bench", "seq": 1, "user": "ann", "text": "x" * 60,
                      "client_id": "c" * 32, "created_at": "2026-01-01T00:00:00+00:00"}],
        }  # fmt: skip
        payload = json.dumps(envelope)
        pipe = client.pipeline(transaction=False)
        for _ in range(emits):
            if mode == "sharded":
                pipe.execute_command("SPUBLISH", room_channel("room:bench"), payload)
            else:
                pipe.publish("socketio", payload)
            if len(pipe) >= 500:
                pipe.execute()
                time.sleep(0.02)  # a steady stream, not one burst
        pipe.execute()
        line = proc.stdout.readline()
        return json.loads(line)["us_per_emit"]
    finally:
        proc.kill()
        proc.wait()


def redis_costs(url: str, publishes: int, pid: int, process_publishes: int) -> dict[str, float]:
    import psutil
    import redis

    server = psutil.Process(pid)

    def server_cpu() -> float:
        times = server.cpu_times()
        return times.user + times.system

    client = redis.Redis.from_url(url)
    out: dict[str, float] = {}
    subscribers: list = []
    for count in (0, 1, 4, 16):
        while len(subscribers) < count:
            p = client.pubsub()
            p.ssubscribe("chat:mq:{room:bench}")
            subscribers.append(p)
        client.config_resetstat()
        pipe = client.pipeline(transaction=False)
        for _ in range(publishes):
            pipe.execute_command("SPUBLISH", "chat:mq:{room:bench}", "x" * 300)
            if len(pipe) >= 500:
                pipe.execute()
                for p in subscribers:  # drain, so Redis's output buffers stay small
                    while p.get_sharded_message(timeout=0) is not None:
                        pass
        pipe.execute()
        stats = client.info("commandstats")["cmdstat_spublish"]
        out[f"spublish_{count}_subscribers_us"] = stats["usec_per_call"]
        before = server_cpu()
        for _ in range(process_publishes):
            pipe.execute_command("SPUBLISH", "chat:mq:{room:bench}", "x" * 300)
            if len(pipe) >= 500:
                pipe.execute()
                for p in subscribers:
                    while p.get_sharded_message(timeout=0) is not None:
                        pass
        pipe.execute()
        out[f"spublish_{count}_subscribers_redis_process_us"] = (
            (server_cpu() - before) / process_publishes * 1e6
        )
    for p in subscribers:
        p.close()
    client.config_resetstat()
    churn = client.pubsub()
    for i in range(2000):
        churn.ssubscribe(f"chat:mq:{{room:c{i}}}")
    for i in range(2000):
        churn.sunsubscribe(f"chat:mq:{{room:c{i}}}")
    while churn.get_sharded_message(timeout=0.2) is not None:
        pass
    stats = client.info("commandstats")
    out["ssubscribe_us"] = stats["cmdstat_ssubscribe"]["usec_per_call"]
    out["sunsubscribe_us"] = stats["cmdstat_sunsubscribe"]["usec_per_call"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emits", type=int, default=5000)
    parser.add_argument(
        "--publishes",
        type=int,
        default=50000,
        help="SPUBLISHes per subscriber count for the redis-server process's CPU (10 ms ticks)",
    )
    args = parser.parse_args()
    import redis.utils

    print(f"hiredis: {redis.utils.HIREDIS_AVAILABLE}", file=sys.stderr)
    from testkit.processes import RedisServer

    server = RedisServer(Path(tempfile.mkdtemp(prefix="mq-costs-")))
    try:
        result = {
            "listener_us_per_emit_sharded_local_member": listener_cost(
                "sharded", server.url, args.emits
            ),
            "listener_us_per_emit_single_channel_no_member": listener_cost(
                "single", server.url, args.emits
            ),
            **redis_costs(server.url, args.emits, server.proc.pid, args.publishes),
        }
    finally:
        server.stop()
    print(json.dumps({k: round(v, 2) for k, v in result.items()}, indent=2))


if __name__ == "__main__":
    main()
