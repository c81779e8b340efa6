"""Socket.IO events through Flask-SocketIO's test client (one worker, no message queue).

This proves the handlers' contract; tests/test_e2e.py proves it over a real WebSocket.
"""

import time

import pytest

from chat.cluster import rate_limit
from chat.extensions import socketio


def events(sio, name):
    # The test client hands "message" events over unwrapped (Socket.IO's send() legacy).
    return [
        e["args"] if name == "message" else e["args"][0]
        for e in sio.get_received()
        if e["name"] == name
    ]


def wait_events(sio, name, count=1, timeout=3.0):
    """Collect `name` events until `count` arrived (the session event comes from a task)."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += events(sio, name)
        if len(seen) >= count:
            return seen
        time.sleep(0.02)
    return seen


def test_connecting_without_a_token_is_refused(app, client):
    sio = socketio.test_client(app, flask_test_client=client)
    assert not sio.is_connected()


@pytest.mark.parametrize("auth", [{"token": "forged.token.value"}, {"token": 5}, {"tok": "x"}, "x"])
def test_connecting_with_a_bad_token_is_refused(app, client, auth):
    sio = socketio.test_client(app, flask_test_client=client, auth=auth)
    assert not sio.is_connected()


def test_on_connect_the_server_names_the_user_and_the_node(sio_client):
    alice = sio_client("alice")
    assert wait_events(alice, "session") == [{"user": "alice", "node": "unit-node"}]


def test_join_returns_the_latest_messages(sio_client):
    alice = sio_client("alice")
    for i in range(3):
        alice.emit(
            "message", {"room": "general", "text": f"m{i}", "client_id": f"c{i}"}, callback=True
        )
    ack = sio_client("bob").emit("join", {"room": "general"}, callback=True)
    assert ack["ok"] and ack["room"] == "general"
    assert [m["text"] for m in ack["messages"]] == ["m0", "m1", "m2"]
    assert "more" not in ack


def test_join_since_returns_only_what_was_missed_paged_by_100(sio_client):
    alice = sio_client("alice")
    for i in range(1, 106):
        alice.emit(
            "message", {"room": "general", "text": f"m{i}", "client_id": f"c{i}"}, callback=True
        )
    ack = alice.emit("join", {"room": "general", "since": 3}, callback=True)
    assert [m["seq"] for m in ack["messages"]] == list(range(4, 104))
    assert ack["more"] is True
    ack = alice.emit("join", {"room": "general", "since": 103}, callback=True)
    assert [m["seq"] for m in ack["messages"]] == [104, 105]


def test_joining_an_unknown_public_room_creates_it(sio_client, client, accounts):
    ack = sio_client("alice").emit("join", {"room": "newroom"}, callback=True)
    assert ack == {"ok": True, "room": "newroom", "messages": []}
    public = client.get("/api/rooms?scope=public", headers=accounts.headers("bob"))
    assert "newroom" in [r["name"] for r in public.get_json()["rooms"]]
    mine = client.get("/api/rooms", headers=accounts.headers("alice")).get_json()["rooms"]
    assert [r["name"] for r in mine] == ["general", "newroom"]  # joining made a member


def test_joining_a_private_room_of_others_is_forbidden(sio_client, client, accounts):
    client.post(
        "/api/rooms", json={"name": "secret", "private": True}, headers=accounts.headers("alice")
    )
    ack = sio_client("carol").emit("join", {"room": "secret"}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"


def test_a_message_reaches_every_socket_in_the_room_and_is_acked(sio_client):
    alice, bob, outsider = sio_client("alice"), sio_client("bob"), sio_client("carol")
    for s in (alice, bob):
        s.emit("join", {"room": "general"}, callback=True)
    outsider.emit("join", {"room": "elsewhere"}, callback=True)
    for s in (alice, bob, outsider):
        s.get_received()
    ack = alice.emit("message", {"room": "general", "text": "hi", "client_id": "k1"}, callback=True)
    assert ack["ok"] is True and ack["message"]["text"] == "hi"
    assert events(bob, "message") == [ack["message"]]
    assert events(alice, "message") == [ack["message"]]
    assert events(outsider, "message") == []


def test_a_retried_message_is_acked_with_the_stored_one_and_not_broadcast_again(sio_client):
    alice, bob = sio_client("alice"), sio_client("bob")
    bob.emit("join", {"room": "general"}, callback=True)
    bob.get_received()
    payload = {"room": "general", "text": "once", "client_id": "same-id"}
    first = alice.emit("message", payload, callback=True)
    second = alice.emit("message", payload, callback=True)
    assert second == first
    assert len(events(bob, "message")) == 1


def test_a_rest_post_is_pushed_like_a_socket_message(sio_client, client, accounts):
    bob = sio_client("bob")
    bob.emit("join", {"room": "general"}, callback=True)
    bob.get_received()
    r = client.post(
        "/api/rooms/general/messages", json={"text": "via rest"}, headers=accounts.headers("alice")
    )
    assert events(bob, "message") == [r.get_json()]


def test_a_retried_rest_post_is_answered_with_the_stored_message_and_not_pushed_again(
    sio_client, client, accounts
):
    bob = sio_client("bob")
    bob.emit("join", {"room": "general"}, callback=True)
    bob.get_received()
    body = {"text": "once", "client_id": "rest-retry"}
    headers = accounts.headers("alice")
    first = client.post("/api/rooms/general/messages", json=body, headers=headers)
    second = client.post("/api/rooms/general/messages", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.get_json() == first.get_json()
    assert events(bob, "message") == [first.get_json()]


def test_leave_stops_delivery(sio_client):
    alice, bob = sio_client("alice"), sio_client("bob")
    bob.emit("join", {"room": "general"}, callback=True)
    assert bob.emit("leave", {"room": "general"}, callback=True) == {"ok": True}
    bob.get_received()
    alice.emit("message", {"room": "general", "text": "hi", "client_id": "x"}, callback=True)
    assert events(bob, "message") == []


@pytest.mark.parametrize(
    ("event", "args", "expected"),
    [
        (
            "join",
            ({"room": "general"}, 2, 3),
            "one payload object per event; 2 more arguments given",
        ),
        (
            "leave",
            ({"room": "general"}, None),
            "one payload object per event; 1 more argument given",
        ),
        (
            "message",
            ({"room": "general", "text": "hi", "client_id": "x1"}, "extra"),
            "one payload object per event; 1 more argument given",
        ),
        (
            "read",
            ({"room": "general", "seq": 1}, {}),
            "one payload object per event; 1 more argument given",
        ),
        ("typing", ({"room": "general"}, 1), "one payload object per event; 1 more argument given"),
    ],
)
def test_arguments_after_the_payload_are_refused_as_invalid(sio_client, event, args, expected):
    alice = sio_client("alice")
    alice.get_received()
    ack = alice.emit(event, *args, callback=True)
    assert ack == {"ok": False, "error": {"code": "invalid", "message": expected}}
    # Nothing was done: the message was not stored (a join with the payload alone shows it).
    assert alice.emit("join", {"room": "general"}, callback=True)["messages"] == []


def test_typing_reaches_the_others_in_the_room_but_not_the_typist(sio_client):
    alice, bob = sio_client("alice"), sio_client("bob")
    for s in (alice, bob):
        s.emit("join", {"room": "general"}, callback=True)
        s.get_received()
    assert alice.emit("typing", {"room": "general"}, callback=True) == {"ok": True}
    assert events(bob, "typing") == [{"room": "general", "user": "alice"}]
    assert events(alice, "typing") == []


def test_typing_in_a_room_one_has_not_joined_is_forbidden(sio_client):
    ack = sio_client("alice").emit("typing", {"room": "general"}, callback=True)
    assert ack["error"]["code"] == "forbidden"


def test_presence_lists_who_is_online_and_follows_changes(app, sio_client):
    liveness = app.extensions["chat.liveness"]
    alice, bob = sio_client("alice"), sio_client("bob")
    alice.emit("join", {"room": "general"}, callback=True)
    bob.emit("join", {"room": "general"}, callback=True)
    alice.get_received()
    liveness.flush_presence()
    assert events(alice, "presence") == [{"room": "general", "users": ["alice", "bob"]}]
    bob.disconnect()
    liveness.flush_presence()
    assert events(alice, "presence") == [{"room": "general", "users": ["alice"]}]
    liveness.flush_presence()  # nothing changed: nothing announced
    assert events(alice, "presence") == []


@pytest.mark.parametrize(
    "event,payload,code",
    [
        ("message", None, "invalid"),
        ("message", "just a string", "invalid"),
        ("message", ["room", "text"], "invalid"),
        ("message", {"room": "general"}, "invalid"),
        ("message", {"room": "general", "text": ""}, "invalid"),
        ("message", {"room": "general", "text": "x" * 4001}, "invalid"),
        ("message", {"room": "general", "text": 3}, "invalid"),
        ("message", {"room": "general", "text": "hi", "client_id": {"a": 1}}, "invalid"),
        ("message", {"room": "general", "text": "hi", "extra": True}, "invalid"),
        ("message", {"room": "no/slash", "text": "hi"}, "invalid"),
        ("message", {"room": "nowhere", "text": "hi"}, "not_found"),
        ("join", {}, "invalid"),
        ("join", {"room": "general", "since": -1}, "invalid"),
        ("join", {"room": "general", "since": "5"}, "invalid"),
        ("join", {"room": "x" * 100}, "invalid"),
        ("leave", 12, "invalid"),
        ("typing", {"room": None}, "invalid"),
    ],
)
def test_bad_payloads_get_an_error_ack_and_store_nothing(
    sio_client, client, accounts, event, payload, code
):
    alice = sio_client("alice")
    ack = alice.emit(event, payload, callback=True)
    assert ack["ok"] is False
    assert ack["error"]["code"] == code, ack
    assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]
    history = client.get("/api/rooms/general/messages", headers=accounts.headers("alice"))
    assert history.get_json()["messages"] == []
    # the connection survives and keeps working
    ok = alice.emit(
        "message", {"room": "general", "text": "still here", "client_id": "z"}, callback=True
    )
    assert ok["ok"] is True and ok["message"]["seq"] == 1


def test_flooding_is_rate_limited(app, sio_client):
    limiter = app.extensions["chat.rate_limiter"]
    limiter.configure({rate_limit.MESSAGES: rate_limit.Rule(5, 10, "messages")})
    alice = sio_client("alice")
    acks = [
        alice.emit(
            "message", {"room": "general", "text": f"m{i}", "client_id": f"f{i}"}, callback=True
        )
        for i in range(8)
    ]
    assert [a["ok"] for a in acks] == [True] * 5 + [False] * 3
    assert acks[-1]["error"]["code"] == "rate_limited"


def test_a_draining_worker_answers_events_unavailable_and_stores_nothing(app, sio_client):
    alice = sio_client("alice")
    assert alice.emit("join", {"room": "general"}, callback=True)["ok"] is True
    namespace = app.extensions["chat.namespace"]
    namespace.stop_accepting_events()
    message = {"room": "general", "text": "during the drain", "client_id": "d1"}
    for name, payload in [("message", message), ("join", {"room": "general"})]:
        ack = alice.emit(name, payload, callback=True)
        assert ack["ok"] is False
        assert ack["error"]["code"] == "unavailable"
    assert namespace.events_running == 0
    namespace.accepting_events = True  # as on the worker the client reconnects to
    assert alice.emit("join", {"room": "general"}, callback=True)["messages"] == []


def test_connect_and_join_hold_no_database_transaction_while_they_wait_on_redis(
    app, sio_client, client, accounts, monkeypatch
):
    # Held across the Redis waits, a burst of joins on a busy worker took every pooled
    # connection, and joins were refused `unavailable` (docs/BENCHMARKS.md).
    from chat.extensions import db
    from chat.realtime import namespace

    alice = accounts.headers("alice")
    client.post("/api/rooms", json={"name": "team", "private": True, "members": []}, headers=alice)
    presence = app.extensions["chat.presence"]
    seen: list[tuple[str, bool]] = []

    def recording(name, real):
        def call(*args, **kwargs):
            seen.append((name, db.session().in_transaction()))
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(presence, "connect", recording("presence.connect", presence.connect))
    monkeypatch.setattr(presence, "enter", recording("presence.enter", presence.enter))
    monkeypatch.setattr(presence, "sids_of", recording("presence.sids_of", presence.sids_of))
    monkeypatch.setattr(namespace, "join_room", recording("join_room", namespace.join_room))
    sio = sio_client("alice")  # a member of general and team: their notify channels
    assert sio.emit("join", {"room": "general"}, callback=True)["ok"]
    assert sio.emit("join", {"room": "fresh"}, callback=True)["ok"]  # a new public room
    assert seen == [
        ("presence.connect", False),
        ("join_room", False),  # the user's channel
        ("join_room", False),  # after the membership read: the lobby's notify channel
        ("join_room", False),  # and team's
        ("join_room", False),  # the join: general's channel
        ("presence.enter", False),
        ("join_room", False),  # the join of a room new to alice: its channel
        ("presence.enter", False),
        ("presence.sids_of", False),  # her other sockets hear of the new membership
    ]


def test_a_join_that_made_a_member_is_acked_even_if_announcing_it_fails(sio_client, monkeypatch):
    from chat.realtime import notify

    def fail(*args, **kwargs):
        raise ConnectionError("redis went away")

    monkeypatch.setattr(notify, "added", fail)
    alice = sio_client("alice")
    ack = alice.emit("join", {"room": "fresh"}, callback=True)
    assert ack["ok"] and ack["room"] == "fresh" and ack["messages"] == []
    # The socket is in the room: a message reaches it.
    sent = alice.emit("message", {"room": "fresh", "text": "hi", "client_id": "c1"}, callback=True)
    assert sent["ok"]
    assert [m["text"] for m in events(alice, "message")] == ["hi"]
