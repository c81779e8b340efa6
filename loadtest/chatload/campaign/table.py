"""The campaign's results table (results.md): one row per run."""

from __future__ import annotations

from typing import Any

# A run is saturated when p99 fan-out passes this, or anything is lost (issue 5).
SATURATION_P99_MS = 100

HEADER = (
    "| scenario | servers | members | msg/s sent | deliveries/s | p50 | p95 | p99 | max "
    "| same p50 | cross p50 | ack p99 | lost | dup | join fail | server CPU s | "
    "µs CPU/delivery | µs CPU/delivery (send window) | µs above idle | load gen CPU s "
    "| load before→after |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def table_row(row: dict[str, Any]) -> str:
    """One markdown row of HEADER's columns from a run's row (measure.run_one)."""
    sc, s = row["scenario"], row["summary"]
    if not s:
        return f"| {sc['name']} | (no summary: exit {row['exit_code']}, see {row['dir']}) |"
    f = s["fanout_ms"]
    delivered = s.get("delivered") or f["all"]["count"]
    cpu = row["cpu_s"]["servers"]
    per = f"{cpu / delivered * 1e6:.0f}" if delivered else "-"
    servers = f"{sc['servers']} x{sc['workers']}" + (
        f" {sc['async_mode']}" if sc["servers"] == "chat" else ""
    )
    if sc.get("direct"):
        servers += " direct"
    ack = s.get("ack_ms") or {}
    marginal = row.get("send_window") or {}
    return (
        f"| {sc['name']} | {servers} | {sc['users']} | {s['messages_per_s']} "
        f"| {s['deliveries_per_s']:,.0f} | {f['all']['p50']} | {f['all']['p95']} "
        f"| {f['all']['p99']} | {f['all']['max']:,.0f} | {f['same-node']['p50']} "
        f"| {f['cross-node']['p50']} | {ack.get('p99', '-')} | {s['lost']} | {s['duplicated']} "
        f"| {s.get('join_failures', 0)} | {cpu:.1f} | {per} "
        f"| {marginal.get('us_cpu_per_delivery', '-')} "
        f"| {marginal.get('us_cpu_per_delivery_above_idle', '-')} "
        f"| {row['load_generator_cpu_s']:.1f} "
        f"| {row['load_before']}→{row['load_after']} |"
    )


def saturated(row: dict[str, Any]) -> bool:
    s = row["summary"]
    return not s or s["lost"] > 0 or s["fanout_ms"]["all"]["p99"] > SATURATION_P99_MS
