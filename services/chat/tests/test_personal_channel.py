"""The per-user push channel through Flask-SocketIO's test client (one app, no queue).

`room` when a user is added to a room or a room gets a message this socket does not receive
live; `read` to the user's other sockets; `room_removed` when the user leaves or is removed.
Over real workers and across three of them: test_dm_cluster.py.
"""

from __future__ import annotations

import time


def drain(sio) -> list[tuple[str, object]]:
    """Everything the socket received since the last drain: (event, payload)."""
    out = []
    for e in sio.get_received():
        out.append((e["name"], e["args"] if e["name"] == "message" else e["args"][0]))
    return out


def named(received, name):
    return [payload for event, payload in received if event == name]


def settle(*socks):
    """Wait for the `session` event each socket gets from a task just after connecting."""
    for sio in socks:
        deadline = time.monotonic() + 3
        while not named(drain(sio), "session"):
            assert time.monotonic() < deadline, "no session event within 3 s"
            time.sleep(0.02)


def one_member_too_many(client, accounts, room: str) -> tuple[dict, list[str]]:
    """A private room of alice and EXACT_ACTIVITY_MEMBERS others: its notices are coalesced."""
    from chat.realtime.notify import EXACT_ACTIVITY_MEMBERS

    members = [f"member{i}" for i in range(EXACT_ACTIVITY_MEMBERS)]
    for name in members:
        accounts.token(name)
    alice = accounts.headers("alice")
    client.post(
        "/api/rooms", json={"name": room, "private": True, "members": members}, headers=alice
    )
    return alice, members


def room_names_busy_once(monkeypatch) -> list[int]:
    """The next read of a user's room names fails as a dry pool refuses; the user ids read."""
    from chat.domain import rooms

    real, calls = rooms.member_room_names, []

    def busy_once(user_id):
        calls.append(user_id)
        if len(calls) == 1:
            raise TimeoutError("QueuePool limit reached")
        return real(user_id)

    monkeypatch.setattr(rooms, "member_room_names", busy_once)
    return calls


def test_a_dm_reaches_the_other_user_at_once_with_its_unread_count(sio_client, client, accounts):
    bob_phone, bob_pc = sio_client("bob"), sio_client("bob")
    alice = sio_client("alice")
    settle(bob_phone, bob_pc, alice)
    r = client.post("/api/dms", json={"user": "bob"}, headers=accounts.headers("alice"))
    dm = r.get_json()
    for sio in (bob_phone, bob_pc, alice):
        assert named(drain(sio), "room") == [dm]  # both users' every socket: added

    assert alice.emit("join", {"room": dm["name"]}, callback=True)["ok"]
    ack = alice.emit("message", {"room": dm["name"], "text": "hi"}, callback=True)
    assert ack["ok"]
    expected = {**dm, "last_seq": 1, "last_read_seq": 0, "unread": 1}
    for sio in (bob_phone, bob_pc):
        received = drain(sio)
        assert named(received, "room") == [expected]
        assert named(received, "message") == []  # not joined: the notice, not the message
    # Alice's socket is joined: it gets the message, and no notice about it.
    received = drain(alice)
    assert named(received, "message") == [ack["message"]]
    assert named(received, "room") == []


def test_a_joined_socket_gets_messages_and_the_others_get_room_notices(
    sio_client, client, accounts
):
    alice, bob_phone, bob_pc = sio_client("alice"), sio_client("bob"), sio_client("bob")
    settle(alice, bob_phone, bob_pc)
    dm = client.post("/api/dms", json={"user": "bob"}, headers=accounts.headers("alice"))
    name = dm.get_json()["name"]
    bob_phone.emit("join", {"room": name}, callback=True)
    for sio in (alice, bob_phone, bob_pc):
        drain(sio)
    ack = alice.emit("message", {"room": name, "text": "one"}, callback=True)
    phone = drain(bob_phone)
    assert named(phone, "message") == [ack["message"]] and named(phone, "room") == []
    pc = drain(bob_pc)
    assert [(r["last_seq"], r["unread"]) for r in named(pc, "room")] == [(1, 1)]
    # The phone leaves the room (stays a member): it hears of the room's activity again.
    bob_phone.emit("leave", {"room": name}, callback=True)
    alice.emit("message", {"room": name, "text": "two"}, callback=True)
    assert [(r["last_seq"], r["unread"]) for r in named(drain(bob_phone), "room")] == [(2, 2)]


def test_reading_on_one_device_tells_the_others(sio_client, client, accounts):
    alice, bob_phone, bob_pc = sio_client("alice"), sio_client("bob"), sio_client("bob")
    settle(alice, bob_phone, bob_pc)
    name = client.post(
        "/api/dms", json={"user": "bob"}, headers=accounts.headers("alice")
    ).get_json()["name"]
    for i in range(3):
        alice.emit("message", {"room": name, "text": f"m{i}"}, callback=True)
    for sio in (alice, bob_phone, bob_pc):
        drain(sio)
    ack = bob_phone.emit("read", {"room": name, "seq": 2}, callback=True)
    assert ack == {"ok": True, "room": name, "last_read_seq": 2}
    assert named(drain(bob_pc), "read") == [{"room": name, "last_read_seq": 2}]
    assert named(drain(bob_phone), "read") == []  # not to the socket that read
    assert named(drain(alice), "read") == []  # nor to anyone else
    # A lower seq acks the current position and moves nothing.
    ack = bob_pc.emit("read", {"room": name, "seq": 1}, callback=True)
    assert ack == {"ok": True, "room": name, "last_read_seq": 2}
    # REST reads reach every socket of the user.
    client.post(f"/api/rooms/{name}/read", json={"seq": 3}, headers=accounts.headers("bob"))
    for sio in (bob_phone, bob_pc):
        assert named(drain(sio), "read") == [{"room": name, "last_read_seq": 3}]


def test_bad_read_events_are_refused_with_a_code(sio_client, client, accounts):
    client.post("/api/rooms", json={"name": "lounge"}, headers=accounts.headers("alice"))
    bob = sio_client("bob")
    for payload, code in [
        ({"room": "general"}, "invalid"),
        ({"room": "general", "seq": "1"}, "invalid"),
        ({"room": "general", "seq": 1, "x": 1}, "invalid"),
        ({"room": "nowhere", "seq": 1}, "not_found"),
        ({"room": "lounge", "seq": 1}, "forbidden"),  # not a member
    ]:
        ack = bob.emit("read", payload, callback=True)
        assert ack["ok"] is False and ack["error"]["code"] == code, payload


def test_joining_a_public_room_makes_a_member_and_tells_the_other_devices(
    sio_client, client, accounts
):
    client.post("/api/rooms", json={"name": "lounge"}, headers=accounts.headers("alice"))
    phone, pc = sio_client("bob"), sio_client("bob")
    settle(phone, pc)
    assert phone.emit("join", {"room": "lounge"}, callback=True)["ok"]
    notice = {
        "name": "lounge",
        "kind": "public",
        "private": False,
        "last_seq": 0,
        "last_read_seq": 0,
        "unread": 0,
    }
    assert named(drain(pc), "room") == [notice]
    assert list(
        r["name"]
        for r in client.get("/api/rooms", headers=accounts.headers("bob")).get_json()["rooms"]
    ) == ["general", "lounge"]
    # The other device hears of the room's messages; the joined one receives them.
    alice = sio_client("alice")
    alice.emit("message", {"room": "lounge", "text": "hi"}, callback=True)
    assert [(r["name"], r["unread"]) for r in named(drain(pc), "room")] == [("lounge", 1)]
    assert [m["text"] for m in named(drain(phone), "message")] == ["hi"]


def test_a_removed_member_stops_receiving_the_room_and_is_told(sio_client, client, accounts):
    alice_h = accounts.headers("alice")
    carol_live, carol_idle = sio_client("carol"), sio_client("carol")
    alice = sio_client("alice")
    settle(carol_live, carol_idle, alice)
    client.post(
        "/api/rooms",
        json={"name": "team", "private": True, "members": ["carol"]},
        headers=alice_h,
    )
    assert named(drain(carol_idle), "room")[0]["members"] == ["alice", "carol"]
    carol_live.emit("join", {"room": "team"}, callback=True)
    alice.emit("join", {"room": "team"}, callback=True)
    assert client.delete("/api/rooms/team/members/carol", headers=alice_h).status_code == 204
    for sio in (carol_live, carol_idle):
        assert named(drain(sio), "room_removed") == [{"room": "team"}]
    ack = alice.emit("message", {"room": "team", "text": "after"}, callback=True)
    assert named(drain(alice), "message") == [ack["message"]]  # the marker reached the room
    for sio in (carol_live, carol_idle):
        received = drain(sio)
        assert named(received, "message") == [] and named(received, "room") == []
    assert carol_live.emit("join", {"room": "team"}, callback=True)["error"]["code"] == "forbidden"


def test_a_big_rooms_notices_are_coalesced_to_about_one_a_second(sio_client, client, accounts):
    from chat.realtime.notify import ACTIVITY_FLUSH_SECONDS

    alice, members = one_member_too_many(client, accounts, "big")
    watcher, live = sio_client("member0"), sio_client("member1")
    settle(watcher, live)
    assert live.emit("join", {"room": "big"}, callback=True)["ok"]
    drain(watcher), drain(live)
    started = time.monotonic()
    for i in range(10):
        client.post("/api/rooms/big/messages", json={"text": f"m{i}"}, headers=alice)
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 10
    notices = []
    while time.monotonic() < deadline and not any(n["last_seq"] == 10 for n in notices):
        notices += named(drain(watcher), "room")
        time.sleep(0.05)
    assert notices[-1] == {
        "name": "big",
        "kind": "private",
        "private": True,
        "last_seq": 10,
        "last_read_seq": 0,
        "unread": 10,
        "members": sorted(["alice", *members]),
    }
    # At most one flush per ACTIVITY_FLUSH_SECONDS while the ten were sent, plus the last: a
    # bound, as how many flush ticks fall inside the sends depends on how long they took.
    assert len(notices) <= 1 + elapsed / ACTIVITY_FLUSH_SECONDS, (len(notices), elapsed)
    # The flush skips a member whose every socket watches the room live.
    received = drain(live)
    assert len(named(received, "message")) == 10 and named(received, "room") == []


def test_a_room_above_the_notice_ceiling_sends_no_notices(
    sio_client, client, accounts, app, monkeypatch
):
    from chat.realtime import notify

    monkeypatch.setattr(notify, "ACTIVITY_MAX_MEMBERS", notify.EXACT_ACTIVITY_MEMBERS)
    alice, members = one_member_too_many(client, accounts, "huge")
    watcher = sio_client("member0")
    settle(watcher)
    drain(watcher)
    client.post("/api/rooms/huge/messages", json={"text": "hello"}, headers=alice)
    coalescer = app.extensions["chat.activity"]
    deadline = time.monotonic() + 10
    while coalescer.running and time.monotonic() < deadline:  # its flush has run once it stops
        time.sleep(0.05)
    assert not coalescer.running
    assert named(drain(watcher), "room") == []
    # Found above the ceiling: the next message costs no read and no flush.
    limits = _spy_on_position_reads(monkeypatch)
    client.post("/api/rooms/huge/messages", json={"text": "again"}, headers=alice)
    assert limits == [] and not coalescer.running
    assert named(drain(watcher), "room") == []


def _spy_on_position_reads(monkeypatch) -> list[int | None]:
    """The `limit` of every read of a room's read positions from now on, in order."""
    from chat.realtime import notify

    limits: list[int | None] = []
    real = notify.rooms.read_positions

    def spy(room, limit=None):
        limits.append(limit)
        return real(room, limit)

    monkeypatch.setattr(notify.rooms, "read_positions", spy)
    return limits


def _wait_for_flush(app) -> None:
    coalescer = app.extensions["chat.activity"]
    deadline = time.monotonic() + 10
    while coalescer.running and time.monotonic() < deadline:  # its flush has run once it stops
        time.sleep(0.05)
    assert not coalescer.running


def test_a_room_found_big_is_read_by_its_flush_not_by_every_message(
    sio_client, client, accounts, app, monkeypatch
):
    from chat.realtime.notify import (
        ACTIVITY_FLUSH_SECONDS,
        ACTIVITY_MAX_MEMBERS,
        EXACT_ACTIVITY_MEMBERS,
    )

    alice, members = one_member_too_many(client, accounts, "big")
    watcher = sio_client("member0")
    settle(watcher)
    limits = _spy_on_position_reads(monkeypatch)
    started = time.monotonic()
    for i in range(5):
        client.post("/api/rooms/big/messages", json={"text": f"m{i}"}, headers=alice)
    elapsed = time.monotonic() - started
    _wait_for_flush(app)
    # The first message found the room big; the other four marked it without a read; each
    # flush (one per ACTIVITY_FLUSH_SECONDS while they were sent, plus the last) read it whole.
    assert limits[0] == EXACT_ACTIVITY_MEMBERS
    assert set(limits[1:]) == {ACTIVITY_MAX_MEMBERS}, limits
    assert 1 <= len(limits[1:]) <= 1 + elapsed / ACTIVITY_FLUSH_SECONDS, (limits, elapsed)
    assert named(drain(watcher), "room")[-1]["last_seq"] == 5


def test_a_big_room_that_shrank_is_exact_again_after_one_flush(
    sio_client, client, accounts, app, monkeypatch
):
    from chat.realtime.notify import ACTIVITY_MAX_MEMBERS, EXACT_ACTIVITY_MEMBERS

    alice, members = one_member_too_many(client, accounts, "big")
    watcher = sio_client("member0")
    settle(watcher)
    limits = _spy_on_position_reads(monkeypatch)
    client.post("/api/rooms/big/messages", json={"text": "one"}, headers=alice)
    _wait_for_flush(app)
    assert client.delete("/api/rooms/big/members/member15", headers=alice).status_code == 204
    # Still taken as big: marked, and its flush reads 16 members, which ends the verdict.
    client.post("/api/rooms/big/messages", json={"text": "two"}, headers=alice)
    _wait_for_flush(app)
    drain(watcher)
    client.post("/api/rooms/big/messages", json={"text": "three"}, headers=alice)
    assert limits == [
        EXACT_ACTIVITY_MEMBERS,  # "one": read, found big
        ACTIVITY_MAX_MEMBERS,  # its flush
        ACTIVITY_MAX_MEMBERS,  # "two": no read; its flush finds 16
        EXACT_ACTIVITY_MEMBERS,  # "three": read, small: notified at once
    ]
    # Sent before the POST returned, not by a flush a second later.
    notice = named(drain(watcher), "room")
    assert [n["last_seq"] for n in notice] == [3] and notice[0]["unread"] == 3


def test_a_big_rooms_verdict_lapses_when_no_flush_renews_it(
    sio_client, client, accounts, app, monkeypatch
):
    from chat.realtime import notify

    monkeypatch.setattr(notify, "KNOWN_BIG_SECONDS", 0.5)
    alice, members = one_member_too_many(client, accounts, "big")
    limits = _spy_on_position_reads(monkeypatch)
    client.post("/api/rooms/big/messages", json={"text": "one"}, headers=alice)
    _wait_for_flush(app)
    time.sleep(0.6)  # past the verdict its flush renewed
    client.post("/api/rooms/big/messages", json={"text": "two"}, headers=alice)
    _wait_for_flush(app)
    assert limits == [notify.EXACT_ACTIVITY_MEMBERS, notify.ACTIVITY_MAX_MEMBERS] * 2


def retries_finished(monkeypatch, pauses: tuple[float, ...]):
    """Connect retries after `pauses` (s); the event is set once a retry task has ended."""
    import threading

    from chat.realtime import namespace

    monkeypatch.setattr(namespace, "SUBSCRIBE_RETRY_SECONDS", pauses)
    done, real = threading.Event(), namespace.ChatNamespace._subscribe_rooms_later

    def later(self, *args):
        try:
            real(self, *args)
        finally:
            done.set()

    monkeypatch.setattr(namespace.ChatNamespace, "_subscribe_rooms_later", later)
    return done


def team_of_alice_and_bob(client, accounts) -> dict:
    """A private room `team` of alice and bob; alice's headers."""
    accounts.token("bob")
    alice = accounts.headers("alice")
    client.post(
        "/api/rooms", json={"name": "team", "private": True, "members": ["bob"]}, headers=alice
    )
    return alice


def test_a_connect_that_could_not_read_its_rooms_subscribes_them_a_moment_later(
    sio_client, client, accounts, monkeypatch
):
    alice = team_of_alice_and_bob(client, accounts)
    done = retries_finished(monkeypatch, (0.2, 0.2))
    calls = room_names_busy_once(monkeypatch)
    bob = sio_client("bob")
    settle(bob)
    assert done.wait(10)
    assert len(calls) == 2  # the connect's read failed, the first retry's did not
    client.post("/api/rooms/team/messages", json={"text": "hi"}, headers=alice)
    notices = named(drain(bob), "room")
    assert [(n["name"], n["last_seq"], n["unread"]) for n in notices] == [("team", 1, 1)]


def test_a_late_subscription_leaves_out_a_room_the_socket_joined_meanwhile(
    sio_client, client, accounts, monkeypatch
):
    alice = team_of_alice_and_bob(client, accounts)
    done = retries_finished(monkeypatch, (3.0,))  # 1.5-4.5 s with the stretch
    calls = room_names_busy_once(monkeypatch)
    bob = sio_client("bob")
    settle(bob)
    assert bob.emit("join", {"room": "team"}, callback=True)["ok"]
    assert len(calls) == 1 and not done.is_set()  # joined before the retry read the rooms
    assert done.wait(10)
    assert len(calls) == 2
    drain(bob)
    client.post("/api/rooms/team/messages", json={"text": "hi"}, headers=alice)
    received = drain(bob)
    assert len(named(received, "message")) == 1 and named(received, "room") == []
