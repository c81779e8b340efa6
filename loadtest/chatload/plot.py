"""PNG of a run: fan-out percentiles over time, deliveries/s, and the latency histogram.

    python -m chatload.plot RESULTS_PREFIX      (the --csv prefix of the run)

Reads locust's `<prefix>_stats_history.csv` (written with --csv-full-history; its percentiles
are locust's "current" ones, over a sliding window of about 10 s) and the
`<prefix>_fanout_histogram.csv` that chatload.report writes at the end of the run.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402

NAMES = ("same-node", "cross-node")
PERCENTILES = ("50%", "95%", "99%")
COLORS = {"same-node": "tab:blue", "cross-node": "tab:orange"}
STYLES = {"50%": "-", "95%": "--", "99%": ":"}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # locust writes N/A before the first sample
        return None


def read_history(path: Path) -> dict[str, list[dict[str, float | None]]]:
    """Rows of the fan-out entries, per name, in time order."""
    rows: dict[str, list[dict[str, float | None]]] = defaultdict(list)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["Type"] == "fanout" and row["Name"] in NAMES:
                rows[row["Name"]].append(
                    {k: _number(v) for k, v in row.items() if k not in ("Type", "Name")}
                )
    return rows


def read_histogram(path: Path) -> tuple[list[float], dict[str, list[int]]]:
    ms: list[float] = []
    counts: dict[str, list[int]] = {n: [] for n in NAMES}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            ms.append(float(row["ms"]))
            for n in NAMES:
                counts[n].append(int(row[n]))
    return ms, counts


def plot(prefix: str) -> Path:
    """Draw the run's PNG beside its CSV files; returns its path."""
    history = read_history(Path(f"{prefix}_stats_history.csv"))
    ms, counts = read_histogram(Path(f"{prefix}_fanout_histogram.csv"))
    fig, (ax_time, ax_rate, ax_hist) = plt.subplots(3, 1, figsize=(10, 11))
    start = min((r[0]["Timestamp"] for r in history.values() if r), default=0) or 0

    for name, rows in history.items():
        t = [r["Timestamp"] - start for r in rows]
        for p in PERCENTILES:
            values = [r[p] if r[p] else None for r in rows]  # 0 until the window fills
            ax_time.plot(t, values, STYLES[p], color=COLORS[name], label=f"{name} p{p[:-1]}")
        total = [r["Total Request Count"] or 0 for r in rows]
        rate = [
            max(0.0, b - a) / max(tb - ta, 1)
            for a, b, ta, tb in zip(total, total[1:], t, t[1:], strict=False)
        ]
        ax_rate.plot(t[1:], rate, color=COLORS[name], label=name)
    ax_time.set(
        title="Fan-out latency percentiles (locust, ~10 s sliding window)",
        xlabel="seconds since the first delivery",
        ylabel="ms",
    )
    ax_time.set_yscale("log")
    ax_time.legend(ncol=2, fontsize="small")
    ax_time.grid(True, which="both", alpha=0.3)
    ax_rate.set(
        title="Deliveries per second",
        xlabel="seconds since the first delivery",
        ylabel="deliveries/s",
    )
    ax_rate.legend(fontsize="small")
    ax_rate.grid(True, alpha=0.3)

    # Buckets widen 10x at 100 ms and again at 1,000 ms: plot deliveries per ms of latency,
    # or the histogram would jump tenfold at each boundary.
    spans = [_bucket_span(m) for m in ms]
    bottom = [0.0] * len(ms)
    for name in NAMES:
        density = [c / s for c, s in zip(counts[name], spans, strict=True)]
        ax_hist.bar(
            ms,
            density,
            width=[0.9 * s for s in spans],
            bottom=bottom,
            color=COLORS[name],
            label=name,
            align="center",
        )
        bottom = [b + d for b, d in zip(bottom, density, strict=True)]
    ax_hist.set(
        title="Fan-out latency distribution (locust buckets: 1 ms below 100 ms, then "
        "2 significant digits)",
        xlabel="ms",
        ylabel="deliveries per ms",
    )
    if ms and max(ms) > 10 * max(min(ms), 1):
        ax_hist.set_xscale("log")
    ax_hist.legend(fontsize="small")
    ax_hist.grid(True, alpha=0.3)
    fig.tight_layout()
    out = Path(f"{prefix}_fanout.png")
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _bucket_span(ms: float) -> float:
    """How many ms one locust bucket covers around `ms` (locust.stats.bucket_response_time)."""
    if ms < 100:
        return 1
    if ms < 1000:
        return 10
    if ms < 10000:
        return 100
    return 1000


def main(prefix: str) -> None:
    """Draw the PNG, then repeat the run's table so that it is the last thing on screen."""
    from .report import table

    png = plot(prefix)
    summary = json.loads(Path(f"{prefix}_chat_summary.json").read_text())
    print(f"\n=== chat fan-out ({prefix}) ===\n{table(summary)}\nplot: {png}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
