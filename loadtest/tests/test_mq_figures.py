"""The campaign's message-queue figures: counters read in quiet moments, CPU in the window."""

from chatload.mq import figures, parse_metrics

PAGE = """# HELP chat_mq_received_total Messages ...
# TYPE chat_mq_received_total counter
chat_mq_received_total{kind="room"} 120.0
chat_mq_received_total{kind="control"} 33.0
chat_mq_received_created{kind="room"} 1.7e9
chat_mq_subscriptions 7.0
"""


def test_the_counters_and_the_gauge_are_read_from_the_metrics_page():
    assert parse_metrics(PAGE) == {"room": 120.0, "control": 33.0, "subscriptions": 7.0}


def summary(**kw):
    base = {
        "sending_started_at": 10.0,
        "sending_stopped_at": 20.0,
        "last_delivery_at": 20.5,
        "grace_ended_at": 25.0,
        "messages": 100,
        "delivered": 300,
        "room_emits_by_node": {"A": {"room_emits": 60, "rooms": 2}},
    }
    return {**base, **kw}


def snap(t: float, room_a: float, room_b: float):
    return (
        t,
        t + 0.01,
        {"A": {"room": room_a, "control": t, "subscriptions": 2.0}, "B": {"room": room_b}},
    )


def test_room_emits_are_counted_between_the_quiet_reads_around_the_window():
    cpu = {
        "A": [(0.0, 0.0), (10.0, 1.0), (20.5, 2.05), (30.0, 3.0)],
        "B": [(0.0, 0.0), (30.0, 0.3)],
    }
    snaps = [
        snap(8.0, 5, 0),
        snap(9.0, 5, 0),
        snap(15.0, 40, 0),
        snap(22.0, 65, 1),
        snap(23, 70, 1),
    ]
    f = figures(summary(), cpu, [[(0.0, 0.0), (30.0, 3.0)]], snaps)
    a, b = f["workers"]["A"], f["workers"]["B"]
    # before: the read at 9 s (the last one before the start), after: the first one past
    # the last delivery + 1 s (22 s); nothing of the run's reads in between counts.
    assert (a["room_received"], a["room_expected"], a["exact"], a["quiet_before"]) == (
        60,
        60,
        True,
        True,
    )
    assert (a["control_received"], a["subscriptions"]) == (13, 2)
    assert (b["room_received"], b["room_expected"], b["exact"]) == (1, 0, False)
    assert f["all_exact"] is False
    assert a["cpu_s"] == 1.05 and a["us_per_message"] == 10500.0  # window 10..20.5 s
    assert f["redis_nodes"] == [{"cpu_s": 1.05, "us_per_message": 10500.0}]


def test_no_window_no_figures():
    assert "error" in figures(summary(sending_started_at=None), {}, [], [])
