"""A reaches B with no polling, over real workers sharing a private Redis.

A is on one worker; B's two devices are on the two others. Every notice B gets crosses the
message queue; nothing here polls the REST API for what the push should have said.
"""

from __future__ import annotations

import threading

import pytest
import requests

from testkit.clients import ChatClient, register

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(database_url, redis_server, start_worker):
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_server.url}
    return [start_worker(NODE_ID=f"dm-{i}", **env) for i in range(3)]


def api(worker, token, method, path, **kwargs):
    headers = {"Authorization": f"Bearer {token}"}
    return requests.request(method, worker.url + path, headers=headers, timeout=15, **kwargs)


def test_a_dm_reaches_b_on_two_other_workers_with_exact_unread_and_read_sync(cluster):
    w0, w1, w2 = cluster
    a_name, a_token = register(w0.url)
    b_name, b_token = register(w0.url)
    a = ChatClient(w0.url, a_token)
    b_phone, b_pc = ChatClient(w1.url, b_token), ChatClient(w2.url, b_token)
    clients = [a, b_phone, b_pc]
    try:
        for c in clients:
            c.wait_for("session")
        r = api(w0, a_token, "POST", "/api/dms", json={"user": b_name.upper()})
        assert r.status_code == 201
        dm = r.json()
        assert dm["kind"] == "dm" and dm["members"] == sorted([a_name, b_name])
        for device in (b_phone, b_pc):
            assert device.wait_for("room", lambda r: r["name"] == dm["name"]) == dm

        assert a.join(dm["name"])["ok"]
        first = a.send(dm["name"], "are you there?")["message"]
        for device in (b_phone, b_pc):
            notice = device.wait_for("room", lambda r: r["last_seq"] == 1)
            assert notice == {**dm, "last_seq": 1, "last_read_seq": 0, "unread": 1}

        ack = b_phone.call("read", {"room": dm["name"], "seq": first["seq"]})
        assert ack == {"ok": True, "room": dm["name"], "last_read_seq": 1}
        assert b_pc.wait_for("read") == {"room": dm["name"], "last_read_seq": 1}

        # The PC opens the conversation; the phone stays in the list view.
        assert b_pc.join(dm["name"])["ok"]
        second = a.send(dm["name"], "second")["message"]
        third = a.send(dm["name"], "third")["message"]
        assert b_pc.wait_for("message", lambda m: m["seq"] == 3) == third
        assert [m["seq"] for m in b_pc.received("message")] == [second["seq"], third["seq"]]
        notice = b_phone.wait_for("room", lambda r: r["last_seq"] == 3)
        assert (notice["last_read_seq"], notice["unread"]) == (1, 2)
        # `third` reached the PC after any notice about `second` would have: there was none.
        assert [n["last_seq"] for n in b_pc.received("room")] == [0, 1]
        assert b_phone.received("message") == [] and b_phone.received("read") == []

        rooms = api(w1, b_token, "GET", "/api/rooms").json()["rooms"]
        assert [(r["name"], r["last_read_seq"], r["unread"]) for r in rooms] == [
            (dm["name"], 1, 2),
            ("general", 0, 0),  # every new user starts in the lobby
        ]
        assert a.received("read") == []  # B's reading is B's alone
        a_rooms = api(w2, a_token, "GET", "/api/rooms").json()["rooms"]
        assert [(r["name"], r["last_read_seq"], r["unread"]) for r in a_rooms] == [
            (dm["name"], 3, 0),
            ("general", 0, 0),
        ]
    finally:
        for c in clients:
            c.close()


def test_both_sides_creating_the_dm_at_once_on_two_workers_get_one_room(cluster):
    w0, w1, _ = cluster
    pairs = [(register(w0.url), register(w1.url)) for _ in range(4)]
    for (a_name, a_token), (b_name, b_token) in pairs:
        barrier = threading.Barrier(2)
        results: dict[str, requests.Response] = {}

        def create(worker, token, other, key, barrier=barrier, results=results):
            barrier.wait()
            results[key] = api(worker, token, "POST", "/api/dms", json={"user": other})

        threads = [
            threading.Thread(target=create, args=(w0, a_token, b_name, "a")),
            threading.Thread(target=create, args=(w1, b_token, a_name, "b")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        statuses = sorted(r.status_code for r in results.values())
        assert statuses == [200, 201], {k: r.text for k, r in results.items()}
        assert results["a"].json()["name"] == results["b"].json()["name"]
        for token in (a_token, b_token):
            rooms = api(w0, token, "GET", "/api/rooms").json()["rooms"]
            assert [r["kind"] for r in rooms] == ["dm", "public"]  # and the lobby


def test_a_removed_member_stops_receiving_the_room_on_every_worker(cluster):
    w0, w1, w2 = cluster
    a_name, a_token = register(w0.url)
    c_name, c_token = register(w0.url)
    api(
        w0,
        a_token,
        "POST",
        "/api/rooms",
        json={"name": "team-x", "private": True, "members": [c_name]},
    )
    lobby = api(w0, a_token, "POST", "/api/dms", json={"user": c_name}).json()["name"]
    a = ChatClient(w0.url, a_token)
    c_devices = [ChatClient(w1.url, c_token), ChatClient(w2.url, c_token)]
    try:
        for c in c_devices:
            assert c.join("team-x")["ok"] and c.join(lobby)["ok"]
        a.join("team-x")
        before = a.send("team-x", "before")["message"]
        for c in c_devices:
            c.wait_for("message", lambda m: m["seq"] == before["seq"] and m["room"] == "team-x")

        r = api(w0, a_token, "DELETE", f"/api/rooms/team-x/members/{c_name}")
        assert r.status_code == 204
        for c in c_devices:
            assert c.wait_for("room_removed") == {"room": "team-x"}
        after = a.send("team-x", "after")["message"]
        marker = a.send(lobby, "marker")["message"]  # sent after `after`, from the same worker
        for c in c_devices:
            c.wait_for("message", lambda m: m["id"] == marker["id"])
            team = [m["text"] for m in c.received("message") if m["room"] == "team-x"]
            assert team == ["before"], after
            assert [n["name"] for n in c.received("room")].count("team-x") == 0
        assert c_devices[0].call("join", {"room": "team-x"})["error"]["code"] == "forbidden"
    finally:
        for c in [a, *c_devices]:
            c.close()
