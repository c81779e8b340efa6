"""Every event kind has a limit, and Redis holds only what is live.

Against real worker processes: `typing` is coalesced (one broadcast per user and room per
TYPING_INTERVAL_SECONDS), joins and room creations are limited per user (`rate_limited`,
429 with Retry-After on REST), and the presence index in a private Redis shrinks back to
the sets with live entries once their sockets leave.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis
import requests

from chat.cluster.shared_state import STAMP_TTL_SECONDS
from testkit.clients import ChatClient, register
from testkit.processes import wait_for

pytestmark = pytest.mark.e2e


def new_room() -> str:
    return f"r-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("async_mode", ["gevent", "eventlet"])
def test_a_typing_burst_is_broadcast_once_per_interval(start_worker, async_mode):
    worker = start_worker(TYPING_INTERVAL_SECONDS="2", ASYNC_MODE=async_mode)
    room = new_room()
    typist_name, typist_token = register(worker.url)
    _, reader_token = register(worker.url)
    typist, reader = ChatClient(worker.url, typist_token), ChatClient(worker.url, reader_token)
    notice = {"room": room, "user": typist_name}

    def typing_seen_after_marker(text: str) -> list:
        """The typing notices the reader got before the typist's message `text` arrived."""
        marker = typist.send(room, text)["message"]
        reader.wait_for("message", lambda m: m["id"] == marker["id"])
        return reader.received("typing")

    try:
        assert typist.join(room)["ok"] and reader.join(room)["ok"]
        # A burst: every one acked, one broadcast. 100 round trips fit the 2 s interval on a
        # busy machine (300 took longer there, and a second broadcast was then right).
        acks = [typist.call("typing", {"room": room}) for _ in range(100)]
        assert acks == [{"ok": True}] * 100
        assert typing_seen_after_marker("marker 1") == [notice]

        # A message ends the typing notice on clients: the author's next typing goes out at
        # once, and the burst after it is coalesced again.
        for _ in range(50):
            assert typist.call("typing", {"room": room}) == {"ok": True}
        assert typing_seen_after_marker("marker 2") == [notice] * 2

        # Without a message, the next notice goes out once the interval has passed.
        assert typist.call("typing", {"room": room}) == {"ok": True}
        assert typist.call("typing", {"room": room}) == {"ok": True}  # coalesced
        time.sleep(2.1)
        assert typist.call("typing", {"room": room}) == {"ok": True}
        assert typing_seen_after_marker("marker 3") == [notice] * 4
    finally:
        typist.close()
        reader.close()


def test_joins_and_room_creations_are_limited_per_user(start_worker):
    worker = start_worker(RATE_LIMIT_JOINS="8", RATE_LIMIT_ROOM_CREATIONS="3")
    _, token = register(worker.url)
    _, other_token = register(worker.url)
    headers = {"Authorization": f"Bearer {token}"}
    client = ChatClient(worker.url, token)
    try:
        created = [new_room() for _ in range(3)]
        for room in created:  # joining a new name creates the room
            assert client.join(room)["ok"] is True
        ack = client.join(new_room())
        assert ack["ok"] is False and ack["error"]["code"] == "rate_limited", ack
        assert ack["error"]["message"] == "more than 3 new rooms in 3600 s; slow down"
        r = requests.post(
            f"{worker.url}/api/rooms", json={"name": new_room()}, headers=headers, timeout=10
        )
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert 3500 <= int(r.headers["Retry-After"]) <= 3600
        # Existing rooms can still be joined (4 joins so far, the refused one included)...
        for room in ["general", *created]:
            assert client.join(room)["ok"] is True
        # ...until the join limit itself runs out.
        ack = client.join("general")
        assert ack["ok"] is False and ack["error"]["code"] == "rate_limited", ack
        assert ack["error"]["message"] == "more than 8 joins in 60 s; slow down"

        # The limits are per user: another user creates rooms as usual, and the room list
        # holds exactly the rooms that were admitted.
        other = ChatClient(worker.url, other_token)
        others_room = new_room()
        try:
            assert other.join(others_room)["ok"] is True
        finally:
            other.close()

        def names(query: str) -> set[str]:
            url = f"{worker.url}/api/rooms{query}"
            return {
                r["name"] for r in requests.get(url, headers=headers, timeout=10).json()["rooms"]
            }

        assert names("") == {"general", *created}  # the caller's rooms: the admitted ones
        assert {"general", *created, others_room} <= names("?scope=public&limit=100")
    finally:
        client.close()


def test_presence_keys_in_redis_are_bounded_by_what_is_live(start_worker, redis_server):
    """No index of sets: each room's set goes with its last entry, stamps expire by themselves."""
    worker = start_worker(REDIS_URL=redis_server.url, PRESENCE_TTL_SECONDS="3")
    spy = redis.Redis(port=redis_server.port, decode_responses=True)
    stayer_name, stayer_token = register(worker.url)
    sprayer_name, sprayer_token = register(worker.url)
    stayer = ChatClient(worker.url, stayer_token)
    assert stayer.join("general")["ok"]
    sprayer = ChatClient(worker.url, sprayer_token)
    rooms = [new_room() for _ in range(15)]
    for room in rooms:
        assert sprayer.join(room)["ok"] is True

    def sets() -> set[str]:
        return set(spy.keys("chat:presence:*")) | set(spy.keys("chat:conns:*"))

    everyone = {f"chat:presence:{{{room}}}" for room in rooms} | {
        "chat:presence:{general}",
        f"chat:conns:{stayer_name}",
        f"chat:conns:{sprayer_name}",
    }
    wait_for(lambda: sets() == everyone, 20, "a set per room and per connected user")
    sprayer.close()  # its 15 rooms and its connection set empty out
    live = {"chat:presence:{general}", f"chat:conns:{stayer_name}"}
    wait_for(lambda: sets() == live, 20, "the sets to shrink to the live ones")
    for room in rooms[:3]:  # and so does a room left while connected
        assert stayer.join(room)["ok"] is True
        assert stayer.call("leave", {"room": room}) == {"ok": True}
    wait_for(lambda: sets() == live, 20, "the sets to shrink again")
    assert spy.keys("chat:ttlsets*") == []
    stamps = spy.keys("chat:presence-stamp:*")
    # A stamp per room whose member list changed: each sprayed room and general.
    assert set(stamps) == {f"chat:presence-stamp:{{{room}}}" for room in [*rooms, "general"]}
    assert all(0 < spy.ttl(key) <= STAMP_TTL_SECONDS for key in stamps)
    assert stayer.join("general")["ok"]
    stayer.close()
