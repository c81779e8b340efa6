"""The short table a run ends with, read from locust's own statistics, plus two files for the plot.

Fan-out latency is locust's StatsEntry for ("fanout", "same-node") and ("fanout",
"cross-node"); "all" is the two merged with StatsEntry.extend. Locust keeps response times
rounded (exact below 100 ms, then two significant digits), so percentiles above 100 ms are
good to about 5 %.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from locust.env import Environment
from locust.stats import StatsEntry

from .ledger import Tally

log = logging.getLogger("chatload")

FANOUT_NAMES = ("same-node", "cross-node")


def fanout_entries(env: Environment) -> dict[str, StatsEntry]:
    """Same-node, cross-node and all deliveries (merged), as locust StatsEntry objects."""
    stats = env.stats
    merged = StatsEntry(stats, "all", "fanout")
    merged.start_time = float("inf")
    out: dict[str, StatsEntry] = {}
    for name in FANOUT_NAMES:
        entry = stats.entries.get((name, "fanout")) or StatsEntry(stats, name, "fanout")
        out[name] = entry
        merged.extend(entry)
    return {"all": merged, **out}


def per_second(entry: StatsEntry) -> float:
    """Requests per second over the seconds the entry was active (not the whole test)."""
    if not entry.num_reqs_per_sec or not entry.last_request_timestamp:
        return 0.0
    first = min(entry.num_reqs_per_sec)
    return entry.num_requests / max(entry.last_request_timestamp - first, 1.0)


def summarize(env: Environment, counts: Tally) -> dict[str, Any]:
    """The figures of the table, as a JSON-able dict."""
    fanout = fanout_entries(env)
    ack = env.stats.entries.get(("message", "ack"))
    join = env.stats.entries.get(("room", "join"))
    connects = [e for (name, method), e in env.stats.entries.items() if method == "connect"]
    connect = StatsEntry(env.stats, "all", "connect")
    connect.start_time = float("inf")
    for entry in connects:
        connect.extend(entry)

    def latency(entry: StatsEntry) -> dict[str, Any]:
        return {
            "count": entry.num_requests,
            "p50": entry.get_response_time_percentile(0.50),
            "p95": entry.get_response_time_percentile(0.95),
            "p99": entry.get_response_time_percentile(0.99),
            "max": round(entry.max_response_time, 1),
        }

    return {
        "deliveries_per_s": round(per_second(fanout["all"]), 1),
        "messages_per_s": round(per_second(ack), 2) if ack else 0.0,
        "fanout_ms": {name: latency(entry) for name, entry in fanout.items()},
        "ack_ms": latency(ack) if ack else None,
        "ack_failures": ack.num_failures if ack else 0,
        "connect_ms": latency(connect),
        "connect_failures": connect.num_failures,
        "join_failures": join.num_failures if join else 0,
        "owed": counts.owed,
        "delivered": counts.delivered,
        "lost": counts.lost,
        "duplicated": counts.duplicated,
        "rooms": counts.rooms,
    }


def table(s: dict[str, Any]) -> str:
    """The short table `make loadtest` prints."""
    lines = [
        f"deliveries/s {s['deliveries_per_s']:>10}   messages/s {s['messages_per_s']}",
        f"{'fan-out ms':<12}{'count':>9}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>9}",
    ]
    for name, f in s["fanout_ms"].items():
        lines.append(
            f"{name:<12}{f['count']:>9}{f['p50']:>8}{f['p95']:>8}{f['p99']:>8}{f['max']:>9}"
        )
    ack = s["ack_ms"]
    lines.append(
        f"ack p99 ms {ack['p99'] if ack else '-':>6}   ack failures {s['ack_failures']}"
        f"   connect p99 ms {s['connect_ms']['p99']}"
        f"   connect failures {s['connect_failures']}"
        f"   join failures {s.get('join_failures', 0)}"
    )
    lines.append(
        f"lost {s['lost']}   duplicated {s['duplicated']}"
        f"   (owed {s['owed']} live deliveries in {s['rooms']} room(s))"
    )
    return "\n".join(lines)


def finish(
    env: Environment,
    counts: Tally,
    go_time: float | None,
    stop_time: float | None = None,
    grace_ended_at: float | None = None,
    room_emits_by_node: dict[str, dict[str, int]] | None = None,
    messages: int | None = None,
) -> dict[str, Any]:
    """Print the table; beside locust's CSV files, write the summary and the latency histogram.

    The send window's bounds (time.time()) go in the summary too, for the campaign's marginal
    server CPU per delivery (chatload.sendwindow): when the senders were told to start and to
    stop, when the last delivery arrived, and when the grace period ended (connections still
    open: the span after the last delivery gives the servers' idle CPU rate).
    """
    summary = summarize(env, counts)
    summary["sending_started_at"] = go_time
    summary["sending_stopped_at"] = stop_time
    summary["last_delivery_at"] = fanout_entries(env)["all"].last_request_timestamp
    summary["grace_ended_at"] = grace_ended_at
    # Per server node: messages sent to rooms it has a member in, and how many such rooms.
    summary["room_emits_by_node"] = room_emits_by_node or {}
    summary["messages"] = messages
    print("\n=== chat fan-out ===\n" + table(summary) + "\n", flush=True)
    prefix = getattr(env.parsed_options, "csv_prefix", None)
    if prefix:
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{prefix}_chat_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_histogram(env, Path(f"{prefix}_fanout_histogram.csv"))
    return summary


def write_histogram(env: Environment, path: Path) -> None:
    """Locust's bucketed response times of the fan-out entries: ms, same-node, cross-node."""
    entries = fanout_entries(env)
    buckets = sorted(
        set(entries["same-node"].response_times) | set(entries["cross-node"].response_times)
    )
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ms", *FANOUT_NAMES])
        for ms in buckets:
            w.writerow([ms, *(entries[n].response_times.get(ms, 0) for n in FANOUT_NAMES)])
