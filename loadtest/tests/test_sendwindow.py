"""The send window's server CPU: bounds from the locust summary, CPU interpolated from samples."""

from __future__ import annotations

import pytest

from chatload.sendwindow import cpu_at, cpu_between, idle_rate, marginal, window

# Cumulative CPU seconds sampled at t = 100, 101, 102, 104: 1 s of CPU per second, then idle.
SAMPLES = [(100.0, 5.0), (101.0, 6.0), (102.0, 7.0), (104.0, 7.0)]


def summary(**fields):
    return {"delivered": 1000, **fields}


def test_the_window_runs_from_the_start_to_the_stop():
    assert window(summary(sending_started_at=10, sending_stopped_at=30, last_delivery_at=29.5)) == (
        10,
        30,
    )


def test_a_backlog_delivered_after_the_stop_extends_the_window():
    assert window(summary(sending_started_at=10, sending_stopped_at=30, last_delivery_at=33)) == (
        10,
        33,
    )


@pytest.mark.parametrize(
    "fields",
    [
        {},  # an old summary: no bounds at all
        {"sending_started_at": None, "sending_stopped_at": 30},  # senders never started
        {"sending_started_at": 10, "sending_stopped_at": None},
        {"sending_started_at": 10, "sending_stopped_at": 10, "last_delivery_at": None},
    ],
)
def test_no_window_without_both_bounds(fields):
    assert window(summary(**fields)) is None


def test_cpu_between_samples_is_interpolated():
    assert cpu_at(SAMPLES, 100.5) == pytest.approx(5.5)
    assert cpu_at(SAMPLES, 103.0) == pytest.approx(7.0)
    assert cpu_at(SAMPLES, 101.0) == 6.0
    assert cpu_between(SAMPLES, 100.5, 101.25) == pytest.approx(0.75)


def test_a_bound_outside_the_samples_gives_no_figure():
    assert cpu_at(SAMPLES, 99.9) is None
    assert cpu_between(SAMPLES, 100.0, 104.1) is None
    assert cpu_between([], 1, 2) is None


def test_marginal_cost_is_the_windows_cpu_over_all_deliveries():
    got = marginal(SAMPLES, summary(sending_started_at=100.5, sending_stopped_at=102.0))
    assert got == {
        "start": 100.5,
        "end": 102.0,
        "seconds": 1.5,
        "server_cpu_s": 1.5,
        "deliveries": 1000,
        "us_cpu_per_delivery": 1500.0,
    }


def test_no_marginal_cost_without_deliveries():
    bounds = {"sending_started_at": 100.5, "sending_stopped_at": 102.0}
    assert marginal(SAMPLES, {**bounds, "delivered": 0}) is None


# 1 s of CPU per second while sending (t = 100..102), then 0.1 s per second, idle (102..106).
WITH_IDLE = [(100.0, 5.0), (101.0, 6.0), (102.0, 7.0), (104.0, 7.2), (106.0, 7.4)]
SENT_THEN_IDLE = summary(
    sending_started_at=100.0,
    sending_stopped_at=101.5,
    last_delivery_at=102.0,
    grace_ended_at=106.0,
)


def test_the_idle_rate_is_measured_after_the_last_delivery_settled():
    assert idle_rate(WITH_IDLE, SENT_THEN_IDLE) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "fields",
    [
        {"grace_ended_at": None},  # an older summary
        {"last_delivery_at": None},  # nothing was delivered
        {"grace_ended_at": 104.5},  # 1.5 s of idle after settling: too short for a rate
    ],
)
def test_no_idle_rate_without_a_long_enough_quiet_span(fields):
    assert idle_rate(WITH_IDLE, {**SENT_THEN_IDLE, **fields}) is None


def test_the_cost_above_idle_subtracts_the_idle_rate_over_the_window():
    got = marginal(WITH_IDLE, SENT_THEN_IDLE)
    # Window 100..102: 2 s of CPU, of which 0.2 s is what the servers burn idle.
    assert got["server_cpu_s"] == pytest.approx(2.0)
    assert got["idle_cpu_s_per_s"] == pytest.approx(0.1)
    assert got["us_cpu_per_delivery"] == pytest.approx(2000.0)
    assert got["us_cpu_per_delivery_above_idle"] == pytest.approx(1800.0)


def test_without_an_idle_rate_only_the_gross_figure_is_given():
    got = marginal(WITH_IDLE, {**SENT_THEN_IDLE, "grace_ended_at": None})
    assert got["us_cpu_per_delivery"] == pytest.approx(2000.0)
    assert "us_cpu_per_delivery_above_idle" not in got
