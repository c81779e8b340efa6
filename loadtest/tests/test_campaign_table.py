"""The campaign's results table: one cell per column, the send window's figures in their own."""

from __future__ import annotations

from chatload.campaign import table as campaign


def a_row(send_window: dict | None) -> dict:
    fanout = {"count": 1000, "p50": 20, "p95": 40, "p99": 60, "max": 80.0}
    return {
        "scenario": {
            "name": "size-100",
            "servers": "chat",
            "workers": 3,
            "async_mode": "gevent",
            "users": 100,
        },
        "exit_code": 0,
        "summary": {
            "delivered": 1000,
            "messages_per_s": 20.0,
            "deliveries_per_s": 1980.0,
            "fanout_ms": {"all": fanout, "same-node": fanout, "cross-node": fanout},
            "ack_ms": {"p99": 30},
            "lost": 0,
            "duplicated": 0,
        },
        "cpu_s": {"servers": 2.5},
        "send_window": send_window,
        "load_generator_cpu_s": 7.0,
        "load_before": 0.5,
        "load_after": 1.2,
        "dir": "x",
    }


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_every_row_has_a_cell_under_every_heading():
    headings = cells(campaign.HEADER.splitlines()[0])
    for window in (None, {"us_cpu_per_delivery": 57.7}):
        assert len(cells(campaign.table_row(a_row(window)))) == len(headings)


def test_the_cost_above_idle_sits_under_its_heading():
    headings = cells(campaign.HEADER.splitlines()[0])
    row = cells(
        campaign.table_row(
            a_row({"us_cpu_per_delivery": 57.7, "us_cpu_per_delivery_above_idle": 31.2})
        )
    )
    figures = dict(zip(headings, row, strict=True))
    assert figures["µs CPU/delivery (send window)"] == "57.7"
    assert figures["µs above idle"] == "31.2"
