"""Where a run's slow deliveries come from: a few slow messages, or slow receivers.

A fan-out p99 over 1,000 members x 600 messages is set by the slowest 6,000 deliveries. Those
can be a handful of messages that every member got late (the server's per-message path: the
insert and commit, the publish, a pause in a worker) or late deliveries spread over many
messages (the receivers' side: a busy load-generator process, a worker's socket writes). The
two call for different work, so this module records every delivery and tells them apart.

Recording (`DeliveryLog`): with CHATLOAD_DELIVERY_LOG=<dir> in its environment (the campaign's
`--delivery-log` sets it per run), each locust process that runs users keeps
(room, seq, latency ms, same node, receiving server node, receive time) per first delivery,
its garbage collections and
(room, seq, ack ms) per acknowledged send, and writes them to <dir>/deliveries-<pid>.json
when the coordinator collects the ledgers (after sending its ledger). A few hundred bytes a
delivery while it runs.

Reading: `python -m chatload.tails <dir>` prints the split.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import json
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ENV = "CHATLOAD_DELIVERY_LOG"
# A collection this long in a load-generator process is counted as a pause that can show in
# the latencies (a delivery at 20,000/s is owed every 50 µs).
LONG_COLLECTION_S = 0.010


class DeliveryLog:
    """One locust process's deliveries and acks, for `summarize` (lists of plain tuples)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.deliveries: list[tuple[str, int, float, bool, str, float]] = []
        self.acks: list[tuple[str, int, float]] = []
        # This process's garbage collections, (wall start s, seconds, generation): a pause
        # here delays every delivery to its users and every send of its senders.
        self.collections: list[tuple[float, float, int]] = []
        self._collection_started = 0.0
        gc.callbacks.append(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._collection_started = time.perf_counter()
        else:
            seconds = time.perf_counter() - self._collection_started
            self.collections.append((time.time() - seconds, seconds, info["generation"]))

    @classmethod
    def from_environment(cls) -> DeliveryLog | None:
        """A log writing under CHATLOAD_DELIVERY_LOG, or None when that is not set."""
        directory = os.environ.get(ENV)
        return cls(Path(directory)) if directory else None

    def delivery(
        self,
        room: str,
        seq: int,
        latency_ms: float,
        same_node: bool,
        node: str,
        received_at: float,
    ) -> None:
        """One first delivery; `received_at` in wall-clock seconds (time.time())."""
        self.deliveries.append((room, seq, latency_ms, same_node, node, received_at))

    def close(self) -> None:
        """Stop recording collections (write() does this too)."""
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def ack(self, room: str, seq: int, ack_ms: float) -> None:
        """One acknowledged send: its message and the ms from send to ack."""
        self.acks.append((room, seq, ack_ms))

    def write(self) -> Path:
        """Write this process's records to <dir>/deliveries-<pid>.json (replaced if there);
        collections after it are no longer recorded."""
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"deliveries-{os.getpid()}.json"
        path.write_text(
            json.dumps(
                {
                    "deliveries": self.deliveries,
                    "acks": self.acks,
                    "collections": self.collections,
                }
            )
        )
        return path


def _quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list (q in [0, 1]): the smallest value that at
    least q of the values are no higher than."""
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def summarize(records: list[dict[str, Any]], top: int = 10) -> dict[str, Any]:
    """The split of the slow deliveries, from the processes' records.

    Returns {deliveries, messages, p50_ms, p99_ms, late (deliveries above the p99),
    messages_with_late, late_in_top_messages (share of the late deliveries held by the `top`
    messages with most), ack_p50_ms / ack_p99_ms (senders' acks), late_share ({"process N" |
    "node NAME": share of its deliveries that are late}), long_collections (the load
    generator's collections of LONG_COLLECTION_S or more: count, ms in all),
    in_collection_late / in_collection_all (share of the late / of all deliveries whose
    flight, send stamp to receipt, overlaps one of them; None without receive times),
    slowest: [{room, seq, deliveries, late, p50_ms, max_ms, ack_ms}] for those messages}.
    Raises ValueError when there are no deliveries.
    """
    # (room, seq, latency ms, receiving node, process, receive time or None)
    rows: list[tuple[str, int, float, str, int, float | None]] = []
    acks: dict[tuple[str, int], float] = {}
    # Long collections by process, (starts, running maximum of the ends), sorted by start: a
    # pause holds only its own process's receipts.
    pauses: list[tuple[float, float]] = []
    index: dict[int, tuple[list[float], list[float]]] = {}
    for process, record in enumerate(records):
        rows.extend(
            (d[0], d[1], d[2], d[4], process, d[5] if len(d) > 5 else None)
            for d in record["deliveries"]
        )
        acks.update({(room, seq): ms for room, seq, ms in record["acks"]})
        own = sorted(
            (start, start + seconds)
            for start, seconds, _generation in record.get("collections", ())
            if seconds >= LONG_COLLECTION_S
        )
        pauses += own
        index[process] = (
            [start for start, _end in own],
            list(itertools.accumulate((end for _start, end in own), max)),
        )
    if not rows:
        raise ValueError("no deliveries recorded")
    latencies = sorted(r[2] for r in rows)
    p99 = _quantile(latencies, 0.99)

    def in_pause(process: int, latency: float, received: float) -> bool:
        # The process's pauses that started by the receipt: did any end after the send?
        starts, ends = index[process]
        i = bisect.bisect_right(starts, received)
        return i > 0 and ends[i - 1] > received - latency / 1000

    timed = all(r[5] is not None for r in rows)
    in_pause_counts = [0, 0, 0]  # all deliveries in a pause, late ones, late ones in all
    by_message: dict[tuple[str, int], list[float]] = defaultdict(list)
    late_by_message: dict[tuple[str, int], int] = defaultdict(int)
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for room, seq, latency, node, process, received in rows:
        by_message[(room, seq)].append(latency)
        late = latency > p99
        for key in (f"process {process}", f"node {node}"):
            totals[key][0] += 1
            totals[key][1] += late
        if late:
            late_by_message[(room, seq)] += 1
        if received is not None:
            paused = in_pause(process, latency, received)
            in_pause_counts[0] += paused
            in_pause_counts[1] += paused and late
            in_pause_counts[2] += late
    late_total = sum(late_by_message.values())
    worst = sorted(late_by_message, key=late_by_message.__getitem__, reverse=True)[:top]
    slowest = []
    for key in worst:
        values = sorted(by_message[key])
        slowest.append(
            {
                "room": key[0],
                "seq": key[1],
                "deliveries": len(values),
                "late": late_by_message[key],
                "p50_ms": round(_quantile(values, 0.5), 1),
                "max_ms": round(values[-1], 1),
                "ack_ms": round(acks[key], 1) if key in acks else None,
            }
        )
    ack_values = sorted(acks.values())
    paused_all, paused_late, late_count = in_pause_counts
    return {
        "deliveries": len(rows),
        "messages": len(by_message),
        "p50_ms": round(_quantile(latencies, 0.5), 1),
        "p99_ms": round(p99, 1),
        "late": late_total,
        "messages_with_late": len(late_by_message),
        "late_in_top_messages": round(sum(late_by_message[k] for k in worst) / late_total, 3)
        if late_total
        else 0.0,
        "ack_p50_ms": round(_quantile(ack_values, 0.5), 1) if ack_values else None,
        "ack_p99_ms": round(_quantile(ack_values, 0.99), 1) if ack_values else None,
        "late_share": {k: round(v[1] / v[0], 4) for k, v in sorted(totals.items())},
        "long_collections": {
            "count": len(pauses),
            "ms": round(sum(end - start for start, end in pauses) * 1000, 1),
        },
        "in_collection_late": round(paused_late / late_count, 3) if timed and late_count else None,
        "in_collection_all": round(paused_all / len(rows), 3) if timed else None,
        "slowest": slowest,
    }


def read(directory: Path) -> list[dict[str, Any]]:
    """Every process's records under `directory`."""
    return [json.loads(p.read_text()) for p in sorted(directory.glob("deliveries-*.json"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatload.tails", description=__doc__)
    parser.add_argument("directory", type=Path, help="a run's deliveries directory")
    parser.add_argument("--top", type=int, default=10, help="messages listed (most late first)")
    args = parser.parse_args(argv)
    s = summarize(read(args.directory), args.top)
    print(
        f"{s['deliveries']} deliveries of {s['messages']} messages: p50 {s['p50_ms']} ms, "
        f"p99 {s['p99_ms']} ms; ack p50 {s['ack_p50_ms']} ms, p99 {s['ack_p99_ms']} ms"
    )
    print(
        f"{s['late']} deliveries above the p99 fall in {s['messages_with_late']} messages; "
        f"the {len(s['slowest'])} with most hold {100 * s['late_in_top_messages']:.1f} % of them"
    )
    pauses = s["long_collections"]
    print(
        f"load generator collections of {1000 * LONG_COLLECTION_S:g} ms or more: "
        f"{pauses['count']} ({pauses['ms']} ms in all); deliveries in flight during one: "
        f"late {s['in_collection_late']}, all {s['in_collection_all']}"
    )
    print("late share by receiving process / server node:")
    for name, share in s["late_share"].items():
        print(f"  {name}: {100 * share:.2f} %")
    print("room seq deliveries late p50_ms max_ms ack_ms")
    for m in s["slowest"]:
        print(
            f"{m['room']} {m['seq']} {m['deliveries']} {m['late']} {m['p50_ms']} {m['max_ms']} "
            f"{m['ack_ms']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
