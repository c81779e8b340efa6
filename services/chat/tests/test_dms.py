"""Person to person: finding people, DMs, memberships, read positions (REST, one app).

The Socket.IO side (the per-user channel: `room`, `read`, `room_removed`) is specified in
test_personal_channel.py; over real workers in test_dm_cluster.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from chat.extensions import db


def post(client, headers, room, text):
    r = client.post(f"/api/rooms/{room}/messages", json={"text": text}, headers=headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def my_rooms(client, headers) -> dict[str, dict]:
    r = client.get("/api/rooms", headers=headers)
    assert r.status_code == 200
    return {room["name"]: room for room in r.get_json()["rooms"]}


# Finding people


def test_users_are_found_by_a_case_insensitive_prefix_at_most_20(client, accounts):
    for name in ["Alice", "alfred", "bob", *[f"al{i:02}" for i in range(25)]]:
        accounts.token(name)
    headers = accounts.headers("bob")
    r = client.get("/api/users?q=AL", headers=headers)
    assert r.status_code == 200
    assert r.get_json() == {"users": [{"username": f"al{i:02}"} for i in range(20)]}
    r = client.get("/api/users?q=alf", headers=headers)
    assert r.get_json() == {"users": [{"username": "alfred"}]}
    assert client.get("/api/users?q=ali", headers=headers).get_json() == {
        "users": [{"username": "Alice"}]
    }
    # `_` is a character of names here, not a wildcard.
    assert client.get("/api/users?q=a_", headers=headers).get_json() == {"users": []}


@pytest.mark.parametrize("query", ["q=a%25", "q=" + "a" * 33, "q=a&x=1", "q=%00"])
def test_a_bad_user_query_is_invalid(client, accounts, query):
    r = client.get(f"/api/users?{query}", headers=accounts.headers("bob"))
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid"


def test_finding_people_needs_a_token(client):
    r = client.get("/api/users?q=a")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"


# One identity whatever the case


def test_a_user_logs_in_with_any_case_and_keeps_the_registered_spelling(client, accounts):
    r = client.post("/api/users", json={"username": "Alice", "password": "password-1"})
    assert r.status_code == 201
    r = client.post("/api/tokens", json={"username": "alice", "password": "password-1"})
    assert r.status_code == 200
    assert r.get_json()["user"]["username"] == "Alice"
    r = client.post("/api/users", json={"username": "ALICE", "password": "password-1"})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "conflict"


def test_a_room_name_is_one_room_whatever_the_case(client, accounts):
    headers = accounts.headers("alice")
    r = client.post("/api/rooms", json={"name": "General"}, headers=headers)
    assert r.status_code == 409
    message = post(client, headers, "GENERAL", "hello")
    assert message["room"] == "general"
    r = client.get("/api/rooms/General/messages", headers=headers)
    assert [m["text"] for m in r.get_json()["messages"]] == ["hello"]


@pytest.mark.parametrize("name", ["dm-1-2", "DM-x"])
def test_dm_names_are_reserved(client, accounts, name):
    r = client.post("/api/rooms", json={"name": name}, headers=accounts.headers("alice"))
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid"


# Direct messages


def test_a_dm_is_created_once_and_found_again_from_either_side(client, accounts):
    alice, bob = accounts.headers("alice"), accounts.headers("Bob")
    r = client.post("/api/dms", json={"user": "bob"}, headers=alice)
    assert r.status_code == 201
    dm = r.get_json()
    assert dm["kind"] == "dm" and dm["private"] is True
    assert dm["members"] == ["alice", "Bob"]
    assert (dm["last_seq"], dm["last_read_seq"], dm["unread"]) == (0, 0, 0)
    again = client.post("/api/dms", json={"user": "Bob"}, headers=alice)
    assert again.status_code == 200 and again.get_json() == dm
    other_side = client.post("/api/dms", json={"user": "ALICE"}, headers=bob)
    assert other_side.status_code == 200 and other_side.get_json() == dm
    assert list(my_rooms(client, bob)) == [dm["name"], "general"]


def test_a_dm_with_an_unknown_user_is_not_found(client, accounts):
    r = client.post("/api/dms", json={"user": "ghost"}, headers=accounts.headers("alice"))
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"


def test_a_dm_with_yourself_is_your_notes_room(client, accounts):
    alice = accounts.headers("alice")
    r = client.post("/api/dms", json={"user": "alice"}, headers=alice)
    assert r.status_code == 201
    assert r.get_json()["kind"] == "dm" and r.get_json()["members"] == ["alice"]
    assert client.post("/api/dms", json={"user": "ALICE"}, headers=alice).status_code == 200


def test_a_dm_takes_no_other_members_and_none_leaves_it(client, accounts):
    alice = accounts.headers("alice")
    accounts.token("bob"), accounts.token("carol")
    dm = client.post("/api/dms", json={"user": "bob"}, headers=alice).get_json()
    r = client.post(f"/api/rooms/{dm['name']}/members", json={"user": "carol"}, headers=alice)
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"
    r = client.delete(f"/api/rooms/{dm['name']}/members/bob", headers=alice)
    assert r.status_code == 403
    r = client.get(f"/api/rooms/{dm['name']}/messages", headers=accounts.headers("carol"))
    assert r.status_code == 403


@pytest.mark.parametrize("body", [{}, {"user": ""}, {"user": 5}, {"user": "a b"}, {"x": "bob"}])
def test_bad_dm_payloads_are_invalid(client, accounts, body):
    r = client.post("/api/dms", json=body, headers=accounts.headers("alice"))
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid"


# Read positions and unread counts


def test_unread_counts_what_came_after_the_read_position(client, accounts):
    alice, bob = accounts.headers("alice"), accounts.headers("bob")
    dm = client.post("/api/dms", json={"user": "bob"}, headers=alice).get_json()["name"]
    for i in range(3):
        post(client, alice, dm, f"m{i}")
    assert my_rooms(client, bob)[dm]["unread"] == 3
    # Sending moves the sender's own read position.
    assert (
        my_rooms(client, alice)[dm]["last_read_seq"],
        my_rooms(client, alice)[dm]["unread"],
    ) == (3, 0)
    r = client.post(f"/api/rooms/{dm}/read", json={"seq": 2}, headers=bob)
    assert r.status_code == 200 and r.get_json() == {"room": dm, "last_read_seq": 2}
    assert my_rooms(client, bob)[dm]["unread"] == 1
    # Never back; never past the newest message.
    r = client.post(f"/api/rooms/{dm}/read", json={"seq": 1}, headers=bob)
    assert r.get_json() == {"room": dm, "last_read_seq": 2}
    r = client.post(f"/api/rooms/{dm}/read", json={"seq": 99}, headers=bob)
    assert r.get_json() == {"room": dm, "last_read_seq": 3}
    assert my_rooms(client, bob)[dm]["unread"] == 0


def test_reading_a_room_one_is_not_in_is_refused(client, accounts):
    carol = accounts.headers("carol")
    accounts.token("alice")
    client.post("/api/rooms", json={"name": "elsewhere"}, headers=accounts.headers("alice"))
    r = client.post("/api/rooms/elsewhere/read", json={"seq": 1}, headers=carol)
    assert r.status_code == 403
    r = client.post("/api/rooms/nowhere/read", json={"seq": 1}, headers=carol)
    assert r.status_code == 404
    r = client.post("/api/rooms/elsewhere/read", json={"seq": -1}, headers=carol)
    assert r.status_code == 400


def test_the_room_list_costs_the_same_queries_for_2_rooms_as_for_40(app, client, accounts):
    alice = accounts.headers("alice")
    for i in range(40):
        accounts.token(f"user{i}")

    def count_list_queries() -> int:
        statements = []
        with app.app_context():
            engines = list(db.engines.values())

        def record(*_args):
            statements.append(1)

        for engine in engines:
            event.listen(engine, "before_cursor_execute", record)
        try:
            assert client.get("/api/rooms", headers=alice).status_code == 200
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", record)
        return len(statements)

    client.post("/api/dms", json={"user": "user0"}, headers=alice)
    client.post("/api/rooms", json={"name": "pub0"}, headers=alice)
    few = count_list_queries()
    for i in range(1, 20):
        client.post("/api/dms", json={"user": f"user{i}"}, headers=alice)
        client.post("/api/rooms", json={"name": f"pub{i}"}, headers=alice)
    assert len(my_rooms(client, alice)) == 41  # and general
    # The token's session check (REST authentication), the rooms with unread counts, the
    # members of the private ones.
    assert count_list_queries() == few == 3


# Public rooms and membership


def test_public_rooms_page_by_name(client, accounts):
    alice = accounts.headers("alice")
    for name in ["b", "A", "c", "D"]:
        client.post("/api/rooms", json={"name": name}, headers=alice)
    r = client.get("/api/rooms?scope=public&limit=2", headers=alice).get_json()
    assert [x["name"] for x in r["rooms"]] == ["A", "b"] and r["more"] is True
    r = client.get("/api/rooms?scope=public&limit=2&after=b", headers=alice).get_json()
    assert [x["name"] for x in r["rooms"]] == ["c", "D"] and r["more"] is True
    r = client.get("/api/rooms?scope=public&limit=2&after=d", headers=alice).get_json()
    assert [x["name"] for x in r["rooms"]] == ["general"] and r["more"] is False


@pytest.mark.parametrize(
    "query", ["scope=all", "limit=0", "limit=101", "limit=x", "after=a%20b", "page=2"]
)
def test_bad_room_list_queries_are_invalid(client, accounts, query):
    r = client.get(f"/api/rooms?{query}", headers=accounts.headers("alice"))
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid"


def test_any_member_adds_to_a_private_room_and_the_creator_removes(client, accounts):
    alice, bob, carol = (accounts.headers(n) for n in ("alice", "bob", "carol"))
    accounts.token("dave")
    client.post(
        "/api/rooms", json={"name": "team", "private": True, "members": ["bob"]}, headers=alice
    )
    r = client.post("/api/rooms/team/members", json={"user": "Carol"}, headers=bob)
    assert r.status_code == 201 and r.get_json()["members"] == ["alice", "bob", "carol"]
    r = client.post("/api/rooms/team/members", json={"user": "carol"}, headers=bob)
    assert r.status_code == 200
    assert my_rooms(client, carol)["team"]["unread"] == 0
    # Not a member: forbidden; unknown user: not found; public room: invalid.
    assert (
        client.post(
            "/api/rooms/team/members", json={"user": "dave"}, headers=accounts.headers("dave")
        ).status_code
        == 403
    )
    assert (
        client.post("/api/rooms/team/members", json={"user": "ghost"}, headers=bob).status_code
        == 404
    )
    assert (
        client.post("/api/rooms/general/members", json={"user": "bob"}, headers=bob).status_code
        == 400
    )
    # Only the creator removes others; anyone leaves.
    r = client.delete("/api/rooms/team/members/carol", headers=bob)
    assert r.status_code == 403
    r = client.delete("/api/rooms/team/members/CAROL", headers=alice)
    assert r.status_code == 204 and r.data == b""
    assert "team" not in my_rooms(client, carol)
    assert client.get("/api/rooms/team/messages", headers=carol).status_code == 403
    r = client.delete("/api/rooms/team/members/bob", headers=bob)
    assert r.status_code == 204
    r = client.delete("/api/rooms/team/members/bob", headers=bob)
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "method, path",
    [
        ("DELETE", "/api/rooms/mine/members/a%00b"),
        ("DELETE", "/api/rooms/mine/members/%ED%A0%BD"),
        ("DELETE", "/api/rooms/ge%00neral/members/alice"),
        ("POST", "/api/rooms/%F0%9F%98%80/read"),
        ("POST", "/api/rooms/a%00/members"),
        ("GET", "/api/rooms/" + "x" * 65 + "/messages"),
    ],
)
def test_names_in_paths_no_room_or_user_could_have_are_invalid(client, accounts, method, path):
    body = {"seq": 1} if path.endswith("/read") else {"user": "alice"}
    headers = accounts.headers("alice")
    assert client.post("/api/rooms", json={"name": "mine"}, headers=headers).status_code == 201
    r = client.open(path, method=method, json=body, headers=headers)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid"
