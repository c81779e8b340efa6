"""Server CPU while the senders send, for a marginal cost per delivery.

CPU of a whole run divided by its deliveries mixes in what every connection costs whatever it
receives (ramp-up, connect, join, pings): in a small room that dominates. The send window is
from the moment the senders start (`sending_started_at` in locust_chat_summary.json) to the
later of the moment they were stopped (`sending_stopped_at`) and the last delivery
(`last_delivery_at`, so a backlog drained after the stop is inside it). Every counted delivery
belongs to a message sent in it, so its CPU over its deliveries is the cost of one more
delivery with the connections already there.

The campaign samples the servers' cumulative CPU seconds with timestamps while locust runs;
the CPU at a window bound is interpolated linearly between the two samples around it.

The idle rate is the servers' CPU per second with every connection still open and nothing
sent: from a second after the last delivery to the end of the grace period
(`grace_ended_at`). Subtracting it over the send window leaves what the messages themselves
cost (`us_cpu_per_delivery_above_idle`), a separately labelled figure: in a small room the
servers' standing cost (their hubs, heartbeats, the clients' pings) is a large share of the
whole.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

Sample = tuple[float, float]  # (time.time(), cumulative CPU seconds)

# The idle span starts this long after the last delivery (the last acks and frames settle)
# and must last at least IDLE_MIN_SECONDS to give a rate.
IDLE_SETTLE_SECONDS = 1.0
IDLE_MIN_SECONDS = 2.0


def window(summary: dict[str, Any]) -> tuple[float, float] | None:
    """(start, end) of the send window in time.time() seconds, or None if it never started."""
    start = summary.get("sending_started_at")
    stopped = summary.get("sending_stopped_at")
    if start is None or stopped is None:
        return None
    end = max(stopped, summary.get("last_delivery_at") or stopped)
    return (start, end) if end > start else None


def cpu_at(samples: Sequence[Sample], t: float) -> float | None:
    """Cumulative CPU at time t, interpolated; None outside the sampled span."""
    if not samples or t < samples[0][0] or t > samples[-1][0]:
        return None
    i = bisect_left(samples, t, key=lambda s: s[0])
    t1, c1 = samples[i]
    if t1 == t or i == 0:
        return c1
    t0, c0 = samples[i - 1]
    return c0 + (c1 - c0) * (t - t0) / (t1 - t0)


def cpu_between(samples: Sequence[Sample], start: float, end: float) -> float | None:
    """CPU seconds used between start and end; None unless the samples cover both."""
    a, b = cpu_at(samples, start), cpu_at(samples, end)
    return None if a is None or b is None else b - a


def idle_rate(samples: Sequence[Sample], summary: dict[str, Any]) -> float | None:
    """CPU seconds per second after the last delivery, before the grace period ended."""
    last, ended = summary.get("last_delivery_at"), summary.get("grace_ended_at")
    if last is None or ended is None:
        return None
    start = last + IDLE_SETTLE_SECONDS
    if ended - start < IDLE_MIN_SECONDS:
        return None
    cpu = cpu_between(samples, start, ended)
    return None if cpu is None else cpu / (ended - start)


def marginal(samples: Sequence[Sample], summary: dict[str, Any]) -> dict[str, Any] | None:
    """The send window's figures for results.jsonl, or None when there is nothing to divide."""
    bounds = window(summary)
    delivered = summary.get("delivered") or 0
    if bounds is None or not delivered:
        return None
    cpu = cpu_between(samples, *bounds)
    if cpu is None:
        return None
    seconds = bounds[1] - bounds[0]
    figures = {
        "start": round(bounds[0], 3),
        "end": round(bounds[1], 3),
        "seconds": round(seconds, 2),
        "server_cpu_s": round(cpu, 3),
        "deliveries": delivered,
        "us_cpu_per_delivery": round(cpu / delivered * 1e6, 1),
    }
    idle = idle_rate(samples, summary)
    if idle is not None:
        figures["idle_cpu_s_per_s"] = round(idle, 4)
        figures["us_cpu_per_delivery_above_idle"] = round(
            (cpu - idle * seconds) / delivered * 1e6, 1
        )
    return figures
