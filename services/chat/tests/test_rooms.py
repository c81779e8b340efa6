"""Rooms over REST: who sees which room, creating public and private rooms."""

import pytest


def names(resp) -> list[str]:
    return [r["name"] for r in resp.get_json()["rooms"]]


def room(name, kind="public", last_seq=0, last_read_seq=0, unread=0, members=None) -> dict:
    item = {
        "name": name,
        "kind": kind,
        "private": kind != "public",
        "last_seq": last_seq,
        "last_read_seq": last_read_seq,
        "unread": unread,
    }
    if members is not None:
        item["members"] = members
    return item


def test_general_exists_from_the_first_start_among_the_public_rooms(client, accounts):
    headers = accounts.headers("alice")
    assert client.get("/api/rooms", headers=headers).get_json() == {"rooms": []}
    r = client.get("/api/rooms?scope=public", headers=headers)
    assert r.status_code == 200
    assert r.get_json() == {
        "rooms": [room("general", last_read_seq=None)],
        "more": False,
    }


def test_a_public_room_is_listed_for_its_members_and_in_the_public_scope(client, accounts):
    r = client.post("/api/rooms", json={"name": "random"}, headers=accounts.headers("alice"))
    assert r.status_code == 201
    assert r.get_json() == room("random")
    assert names(client.get("/api/rooms", headers=accounts.headers("alice"))) == ["random"]
    bob = accounts.headers("bob")
    assert names(client.get("/api/rooms", headers=bob)) == []
    assert names(client.get("/api/rooms?scope=public", headers=bob)) == ["general", "random"]


def test_a_private_room_is_listed_only_for_its_members(client, accounts):
    accounts.token("bob")
    accounts.token("carol")
    r = client.post(
        "/api/rooms",
        json={"name": "secret", "private": True, "members": ["bob"]},
        headers=accounts.headers("alice"),
    )
    assert r.status_code == 201
    assert r.get_json() == room("secret", "private", members=["alice", "bob"])
    bob_rooms = client.get("/api/rooms", headers=accounts.headers("bob")).get_json()["rooms"]
    assert bob_rooms == [room("secret", "private", members=["alice", "bob"])]
    assert names(client.get("/api/rooms", headers=accounts.headers("carol"))) == []
    assert names(client.get("/api/rooms?scope=public", headers=accounts.headers("carol"))) == [
        "general"
    ]


def test_a_non_member_cannot_read_or_post_in_a_private_room(client, accounts):
    client.post(
        "/api/rooms", json={"name": "secret", "private": True}, headers=accounts.headers("alice")
    )
    carol = accounts.headers("carol")
    r = client.get("/api/rooms/secret/messages", headers=carol)
    assert r.status_code == 403
    assert r.get_json()["error"]["code"] == "forbidden"
    r = client.post("/api/rooms/secret/messages", json={"text": "hi"}, headers=carol)
    assert r.status_code == 403


def test_creating_an_existing_room_is_a_conflict(client, accounts):
    headers = accounts.headers("alice")
    assert client.post("/api/rooms", json={"name": "general"}, headers=headers).status_code == 409


def test_unknown_members_are_refused_and_nothing_is_created(client, accounts):
    headers = accounts.headers("alice")
    r = client.post(
        "/api/rooms", json={"name": "x", "private": True, "members": ["ghost"]}, headers=headers
    )
    assert r.status_code == 400
    assert "ghost" in r.get_json()["error"]["message"]
    assert names(client.get("/api/rooms?scope=public", headers=headers)) == ["general"]
    assert names(client.get("/api/rooms", headers=headers)) == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "has space"},
        {"name": "x" * 65},
        {"name": "ok", "private": "yes"},
        {"name": "ok", "members": "bob"},
        {"name": "ok", "members": [1, 2]},
        {"name": "ok", "colour": "red"},
    ],
)
def test_bad_room_payloads_are_invalid(client, accounts, body):
    r = client.post("/api/rooms", json=body, headers=accounts.headers("alice"))
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "invalid"
