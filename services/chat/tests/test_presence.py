"""Presence as two workers see it through one shared state (in memory here; Redis in
deploy/tests/test_cluster_presence.py): each tells its own sockets, and converges."""

from __future__ import annotations

from chat.cluster.presence import Presence
from chat.cluster.shared_state import MemoryState

ROOM = "general"


def two_workers(settle: float = 0.0) -> tuple[MemoryState, Presence, Presence]:
    state = MemoryState()
    return (
        state,
        Presence(state, "node-1", ttl=60, settle=settle),
        Presence(state, "node-2", ttl=60, settle=settle),
    )


def test_a_change_on_one_worker_reaches_the_other_workers_sockets_once():
    _, one, two = two_workers()
    one.connect("s1", "alice")
    one.enter("s1", ROOM)
    two.connect("s2", "bob")
    two.enter("s2", ROOM)
    assert one.changes() == [(ROOM, ["alice", "bob"])]
    assert two.changes() == [(ROOM, ["alice", "bob"])]
    two.connect("s3", "carol")
    two.enter("s3", ROOM)
    assert one.changes() == [(ROOM, ["alice", "bob", "carol"])]
    assert one.changes() == []  # told once
    assert two.changes() == [(ROOM, ["alice", "bob", "carol"])]
    assert two.changes() == []


def test_a_worker_without_sockets_in_the_room_tells_nobody():
    _, one, two = two_workers()
    one.connect("s1", "alice")
    one.enter("s1", ROOM)
    two.connect("s2", "bob")
    assert two.changes() == []
    assert one.changes() == [(ROOM, ["alice"])]


def test_after_the_state_is_lost_every_worker_writes_its_entries_back_and_all_converge():
    state, one, two = two_workers()
    for presence, sid, user in ((one, "s1", "alice"), (two, "s2", "bob")):
        presence.connect(sid, user)
        presence.enter(sid, ROOM)
    assert one.changes() == two.changes() == [(ROOM, ["alice", "bob"])]

    state.__init__()  # what a Redis restart without persistence leaves: nothing
    one.connect("s3", "carol")
    one.enter("s3", ROOM)

    # Each worker finds the epoch it wrote gone, so it writes its own entries back and
    # re-reads; the first to do so sees only its own, the other then sees everyone.
    assert one.changes() == [(ROOM, ["alice", "carol"])]
    assert two.changes() == [(ROOM, ["alice", "bob", "carol"])]
    assert one.changes() == [(ROOM, ["alice", "bob", "carol"])]
    assert one.changes() == two.changes() == []
    assert one.online(ROOM) == ["alice", "bob", "carol"]


def test_while_the_others_write_back_after_a_loss_no_partial_list_is_announced():
    state, one, two = two_workers(settle=60)
    for presence, sid, user in ((one, "s1", "alice"), (two, "s2", "bob")):
        presence.connect(sid, user)
        presence.enter(sid, ROOM)
    assert one.changes() == two.changes() == [(ROOM, ["alice", "bob"])]

    state.__init__()
    # One worker has written back, the other not yet: "alice" alone is not announced.
    assert one.changes() == []
    assert two.changes() == []
    assert one.online(ROOM) == ["alice", "bob"]  # both written back; announced once settled


def test_the_rooms_and_entries_kept_as_sockets_come_and_go_match_the_sockets():
    """local_rooms() and the heartbeat's entries are kept per room and user, not walked."""
    state, one, _ = two_workers()
    one.connect("s1", "alice")
    one.connect("s2", "alice")
    one.connect("s3", "bob")
    one.enter("s1", ROOM)
    one.enter("s1", "random")
    one.enter("s2", ROOM)
    one.enter("s3", "random")
    one.enter("s3", "random")  # twice: one entry
    assert one.local_rooms() == {ROOM, "random"}
    one.leave("s1", "random")
    assert one.local_rooms() == {ROOM, "random"}  # s3 is still in it
    one.leave("s3", "random")
    assert one.local_rooms() == {ROOM}
    one.leave("s3", "random")  # not in it any more: nothing changes
    one.disconnect("s1")
    assert one.local_rooms() == {ROOM}
    one.disconnect("s2")
    assert one.local_rooms() == set()
    one.enter("s3", "quiet")
    state._sets.clear()  # the shared state lost everything: the heartbeat writes it back
    one.heartbeat()
    assert sorted(state.members("chat:conns:bob")) == ["bob|node-1|s3"]
    assert state.members("chat:conns:alice") == []
    assert sorted(state.members("chat:presence:{quiet}")) == ["bob|node-1|s3"]
    assert state.members("chat:presence:{general}") == []
    assert one.sids_of("bob") == ["s3"]


def test_a_sid_connected_again_starts_with_no_rooms():
    _, one, _ = two_workers()
    one.connect("s1", "alice")
    one.enter("s1", ROOM)
    one.connect("s1", "alice")
    assert one.local_rooms() == set()
    assert one.local["s1"].rooms == set()
