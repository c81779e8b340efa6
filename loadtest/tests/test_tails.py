"""chatload.tails: the slow deliveries told apart, a few slow messages or slow receivers."""

from __future__ import annotations

import gc
import time

from chatload.tails import DeliveryLog, read, summarize


def record(deliveries, acks=()):
    return {"deliveries": [list(d) for d in deliveries], "acks": [list(a) for a in acks]}


def test_a_message_every_member_got_late_holds_the_late_deliveries():
    # 100 messages x 10 members at 10 ms, except message 7: every member got it at 500 ms.
    deliveries = [
        ("r", seq, 500.0 if seq == 7 else 10.0, True, "n1") for seq in range(100) for _ in range(10)
    ]
    split = summarize([record(deliveries, [("r", 7, 480.0), ("r", 8, 5.0)])], top=3)
    assert split["deliveries"] == 1000 and split["messages"] == 100
    assert split["p50_ms"] == split["p99_ms"] == 10.0  # 99 % of the deliveries took 10 ms
    assert split["late"] == 10 and split["messages_with_late"] == 1
    assert split["late_in_top_messages"] == 1.0
    assert split["slowest"] == [
        {
            "room": "r",
            "seq": 7,
            "deliveries": 10,
            "late": 10,
            "p50_ms": 500.0,
            "max_ms": 500.0,
            "ack_ms": 480.0,
        }
    ]
    assert split["ack_p50_ms"] == 5.0 and split["ack_p99_ms"] == 480.0


def test_late_deliveries_in_few_messages_are_counted_per_message():
    # 1,000 messages x 10 members: 3 messages 200-210 ms for everyone, the rest 10 ms.
    slow = {5: 200.0, 50: 205.0, 500: 210.0}
    deliveries = [
        ("r", seq, slow.get(seq, 10.0), True, "n1") for seq in range(1000) for _ in range(10)
    ]
    split = summarize([record(deliveries, [("r", 500, 190.0)])], top=2)
    assert split["p99_ms"] == 10.0
    assert split["late"] == 30 and split["messages_with_late"] == 3
    assert split["late_in_top_messages"] == round(20 / 30, 3)
    assert [(m["seq"], m["late"], m["p50_ms"]) for m in split["slowest"]] == [
        (5, 10, 200.0),
        (50, 10, 205.0),
    ]


def test_late_deliveries_spread_over_messages_show_in_one_receivers_share():
    # Process 1's one receiver is slow on every 10th message; process 0's 20 never are.
    fast = [("r", seq, 10.0, True, "n1") for seq in range(400) for _ in range(20)]
    slow = [("r", seq, 300.0 if seq % 10 == 0 else 10.0, False, "n2") for seq in range(400)]
    split = summarize([record(fast), record(slow)])
    assert split["p99_ms"] == 10.0
    assert split["late"] == 40 and split["messages_with_late"] == 40
    assert split["late_in_top_messages"] == 0.25  # the 10 with most hold 10 of the 40
    assert split["late_share"]["process 0"] == 0.0
    assert split["late_share"]["process 1"] == 0.1
    assert split["late_share"]["node n2"] == 0.1 and split["late_share"]["node n1"] == 0.0
    assert split["slowest"][0]["ack_ms"] is None  # no ack recorded for it


def test_what_a_process_writes_is_what_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATLOAD_DELIVERY_LOG", str(tmp_path / "d"))
    log = DeliveryLog.from_environment()
    assert log is not None
    log.delivery("lobby", 3, 12.5, False, "node-1", 1700000000.25)
    log.ack("lobby", 3, 4.0)
    gc.collect(1)  # recorded by the log's collection callback
    log.write()
    [written] = read(tmp_path / "d")
    assert written["deliveries"] == [["lobby", 3, 12.5, False, "node-1", 1700000000.25]]
    assert written["acks"] == [["lobby", 3, 4.0]]
    started, seconds, generation = written["collections"][-1]
    assert generation == 1 and seconds >= 0 and abs(started - time.time()) < 60


def test_no_directory_means_no_log(monkeypatch):
    monkeypatch.delenv("CHATLOAD_DELIVERY_LOG", raising=False)
    assert DeliveryLog.from_environment() is None


def test_deliveries_in_flight_during_a_load_generator_pause_are_counted():
    # 200 deliveries of 2 ms each, one every 10 ms from t=100; a 50 ms collection at t=100.5
    # holds the 5 received in (100.5, 100.55]; they are the slow ones (60 ms).
    deliveries = []
    for i in range(200):
        received = 100.0 + i * 0.01
        latency = 60.0 if 100.5 < received <= 100.55 else 2.0
        deliveries.append(("r", i, latency, True, "n1", received))
    short = (100.2, 0.001, 0)  # under LONG_COLLECTION_S: not a pause
    split = summarize(
        [{"deliveries": deliveries, "acks": [], "collections": [(100.5, 0.05, 2), short]}]
    )
    assert split["long_collections"] == {"count": 1, "ms": 50.0}
    assert split["late"] == 0  # 5 of 200 is 2.5 %: the p99 is 60 ms itself
    assert split["in_collection_all"] == round(
        6 / 200, 3
    )  # received 100.50 (in flight at its start) to 100.55
    assert split["in_collection_late"] is None


def test_no_receive_times_means_no_pause_figures():
    split = summarize([record([("r", 1, 5.0, True, "n1")])])
    assert split["in_collection_all"] is None and split["long_collections"]["count"] == 0


def test_a_pause_holds_only_its_own_processes_receipts():
    # 1,000 deliveries in each of two processes, one every 10 ms, 2 ms each; process 1 paused
    # 50 ms at t=105 and its 5 receipts in (105, 105.05] took 60 ms. Process 0 was not paused.
    def deliveries(slow: bool) -> list:
        out = []
        for i in range(1000):
            received = 100.0 + i * 0.01
            late = slow and 105.0 < received <= 105.05 + 1e-9
            out.append(("r", i, 60.0 if late else 2.0, True, "n1", received))
        return out

    split = summarize(
        [
            {"deliveries": deliveries(False), "acks": [], "collections": []},
            {"deliveries": deliveries(True), "acks": [], "collections": [(105.0, 0.05, 2)]},
        ]
    )
    assert split["p99_ms"] == 2.0 and split["late"] == 5
    assert split["in_collection_late"] == 1.0
    # Process 1's receipts at 105.00 .. 105.05 only: 6 of 2,000 (process 0's are not held).
    assert split["in_collection_all"] == round(6 / 2000, 3)
