"""The delivery ledger counts lost and duplicated deliveries by (room, seq), across processes."""

import pytest

from chatload.ledger import DeliveryLedger, tally
from chatload.scenario import Scenario, sender_count


def joined(ledger: DeliveryLedger, member: str, room: str, baseline: int = 0) -> None:
    ledger.joining(member, room)
    ledger.joined(member, room, baseline)


def test_every_member_owed_every_seq_after_its_join_and_nothing_missing_counts_zero():
    ledger = DeliveryLedger()
    for m in ("a", "b"):
        joined(ledger, m, "r")
    for seq in (1, 2, 3):
        ledger.sent("r", seq)
        assert ledger.receive("a", "r", seq) is True
        assert ledger.receive("b", "r", seq) is True
    t = tally([ledger.summary()])
    assert (t.owed, t.delivered, t.lost, t.duplicated, t.rooms) == (6, 6, 0, 0, 1)


def test_a_gap_and_a_missing_tail_are_lost_and_a_repeat_is_a_duplicate():
    ledger = DeliveryLedger()
    joined(ledger, "a", "r")
    for seq in (1, 2, 3, 4):
        ledger.sent("r", seq)
    assert ledger.receive("a", "r", 1) is True
    assert ledger.receive("a", "r", 3) is True
    assert ledger.receive("a", "r", 3) is False  # seq 2 and 4 never arrive
    t = tally([ledger.summary()])
    assert (t.owed, t.delivered, t.lost, t.duplicated) == (4, 2, 2, 1)


def test_history_in_the_join_ack_is_not_owed_live():
    ledger = DeliveryLedger()
    ledger.sent("r", 5)
    joined(ledger, "late", "r", baseline=5)
    assert ledger.receive("late", "r", 5) is None  # in its history and live: allowed, not counted
    ledger.sent("r", 6)
    assert ledger.receive("late", "r", 6) is True
    t = tally([ledger.summary()])
    assert (t.owed, t.lost) == (1, 0)


def test_deliveries_that_beat_the_join_ack_count_once_the_baseline_is_known():
    ledger = DeliveryLedger()
    ledger.joining("a", "r")
    assert ledger.receive("a", "r", 7) is None
    assert ledger.receive("a", "r", 8) is None
    assert ledger.joined("a", "r", baseline=7) == [8]
    t = tally([ledger.summary()])
    assert (t.owed, t.delivered, t.lost) == (1, 1, 0)


def test_the_last_seq_of_a_room_comes_from_any_process():
    """The sender's ack lives in one worker, the receivers in another: the tail is still owed."""
    senders, receivers = DeliveryLedger(), DeliveryLedger()
    joined(receivers, "b", "r")
    for seq in (1, 2, 3):
        senders.sent("r", seq)
    receivers.receive("b", "r", 1)
    t = tally([senders.summary(), receivers.summary()])
    assert (t.owed, t.delivered, t.lost) == (3, 1, 2)


def test_a_member_that_leaves_early_is_owed_only_up_to_what_it_last_saw():
    ledger = DeliveryLedger()
    joined(ledger, "a", "r")
    ledger.receive("a", "r", 1)
    ledger.receive("a", "r", 3)
    ledger.leave("a")
    ledger.sent("r", 10)
    t = tally([ledger.summary()])
    assert (t.owed, t.delivered, t.lost) == (3, 2, 1)


def test_a_member_whose_join_never_succeeded_is_owed_nothing():
    ledger = DeliveryLedger()
    ledger.joining("a", "r")
    ledger.sent("r", 3)
    assert tally([ledger.summary()]).owed == 0


def test_a_room_nobody_sent_in_owes_nothing():
    ledger = DeliveryLedger()
    joined(ledger, "a", "quiet")
    joined(ledger, "b", "busy")
    ledger.sent("busy", 1)
    assert ledger.receive("b", "busy", 1) is True
    t = tally([ledger.summary()])
    assert (t.owed, t.delivered, t.lost, t.rooms) == (1, 1, 0, 2)


def test_dm_pairs_are_2k_and_2k_plus_1():
    sc = scenario(dms=True)
    assert [sc.partner_of(i) for i in (0, 1, 6, 7)] == [
        sc.username(1),
        sc.username(0),
        sc.username(7),
        sc.username(6),
    ]


def scenario(**kw) -> Scenario:
    base = dict(
        targets=["http://a", "http://b"],
        room_size=0,
        senders=5,
        planned_users=300,
        rate=4,
        message_size=128,
        polling_share=0.0,
        grace=5,
        run_id="lt1",
        user_prefix="lt1",
        tokens_file="",
        password="x" * 8,
        connect_timeout=10,
        processes=1,
    )
    return Scenario(**{**base, **kw})


def test_senders_are_spread_evenly_over_the_planned_users():
    sc = scenario()
    assert [i for i in range(300) if sc.is_sender(i)] == [0, 60, 120, 180, 240]
    sc = scenario(room_size=10, senders=sender_count("10%", 100), planned_users=100)
    assert [sc.room_of(i) for i in range(100) if sc.is_sender(i)] == [
        f"lt1-r{r}" for r in range(10)
    ]


def test_rooms_and_transports_follow_the_parameters():
    assert scenario().room_of(299) == "lt1-all"
    assert scenario(room_size=10).room_of(25) == "lt1-r2"
    sc = scenario(polling_share=0.25)
    assert [sc.transports(i)[0] for i in range(8)].count("polling") == 2


def test_sender_count_takes_a_count_or_a_share():
    assert sender_count("5", 300) == 5
    assert sender_count("2%", 300) == 6
    assert sender_count("0.1%", 300) == 1
    assert sender_count("50", 10) == 10


def test_received_seqs_are_kept_as_a_watermark_plus_what_came_beyond_a_gap():
    from chatload.ledger import SeqSet

    seqs = SeqSet(start=10)
    assert [seqs.add(s) for s in (11, 12, 14, 16, 12, 14)] == [True, True, True, True, False, False]
    assert (seqs.upto, seqs.ahead, len(seqs)) == (12, {14, 16}, 4)
    assert seqs.add(13) is True  # fills the gap: the watermark moves past 14
    assert (seqs.upto, seqs.ahead, len(seqs), seqs.highest()) == (14, {16}, 5, 16)
    assert 10 not in seqs and 13 in seqs and 15 not in seqs and 16 in seqs
    assert list(seqs) == [11, 12, 13, 14, 16]
    assert (seqs.count_upto(12), seqs.count_upto(15), seqs.count_upto(99)) == (2, 4, 5)
    assert SeqSet(start=5).highest() is None


def test_a_big_room_costs_a_few_integers_per_member_not_one_entry_per_delivery():
    ledger = DeliveryLedger()
    for m in range(50):
        joined(ledger, f"m{m}", "r")
    for seq in range(1, 2001):
        ledger.sent("r", seq)
        for m in range(50):
            assert ledger.receive(f"m{m}", "r", seq) is True
    assert all(not v.received.ahead for v in ledger.members.values())
    t = tally([ledger.summary()])
    assert (t.owed, t.delivered, t.lost, t.duplicated) == (100_000, 100_000, 0, 0)


def test_a_fixed_user_prefix_reuses_accounts_while_rooms_stay_per_run():
    sc = scenario(run_id="lt2", user_prefix="bench")
    assert (sc.username(7), sc.room_of(7)) == ("bench-u7", "lt2-all")


def test_rooms_of_sizes_in_turn_and_one_sender_in_each():
    """600 rooms of 2, 3, 4 members: 1,800 users, and 600 senders land one in every room."""
    sc = scenario(room_sizes=(2, 3, 4), senders=600, planned_users=1800)
    assert [sc.room_of(i) for i in range(10)] == [
        "lt1-r0", "lt1-r0", "lt1-r1", "lt1-r1", "lt1-r1",
        "lt1-r2", "lt1-r2", "lt1-r2", "lt1-r2", "lt1-r3",
    ]  # fmt: skip
    members: dict[str, int] = {}
    for i in range(1800):
        members[sc.room_of(i)] = members.get(sc.room_of(i), 0) + 1
    assert len(members) == 600 and sorted(set(members.values())) == [2, 3, 4]
    senders = [sc.room_of(i) for i in range(1800) if sc.is_sender(i)]
    assert sorted(senders) == sorted(members)


def test_room_sizes_are_parsed_and_checked():
    from chatload.scenario import parse_room_sizes

    assert parse_room_sizes("2,3,4") == (2, 3, 4)
    assert parse_room_sizes("") == ()
    with pytest.raises(SystemExit):
        parse_room_sizes("2,0")


def test_each_node_is_owed_the_emits_of_the_rooms_it_has_a_member_in():
    """Members on nodes A and B; room r1 only on A: A hears r1 and r2, B only r2."""
    from chatload.ledger import messages_sent, room_emits_by_node

    one, two = DeliveryLedger(), DeliveryLedger()
    for ledger, member, room, node in (
        (one, "a", "r1", "A"),
        (one, "b", "r1", "A"),
        (one, "c", "r2", "A"),
        (two, "d", "r2", "B"),
        (two, "e", "r3", "B"),  # nobody sends in r3
    ):
        ledger.joining(member, room)
        ledger.joined(member, room, 0, node)
    for seq in range(1, 4):
        one.sent("r1", seq)
    for seq in range(1, 6):
        two.sent("r2", seq)
    two.join_failed("r1", "B")  # B's member of r1 may or may not have got in
    summaries = [one.summary(), two.summary()]
    assert room_emits_by_node(summaries) == {
        "A": {"room_emits": 3 + 5, "rooms": 2, "room_emits_max": 3 + 5},
        "B": {"room_emits": 5, "rooms": 2, "room_emits_max": 5 + 3},
    }
    assert messages_sent(summaries) == 8
