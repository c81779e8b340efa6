"""No one let in: missing, expired, forged and malformed tokens; a token of A in B's private room.

Against a real worker process (`python -m chat`), over a raw Socket.IO connection (so the
exact refusal envelope is visible), the real python-socketio client, and REST. After each
refusal a normal client on the same worker is still served.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
import requests
import socketio
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from chat.domain import accounts
from testkit.clients import ChatClient, assert_still_serving, register
from testkit.processes import ASYNC_MODES
from testkit.rawsocket import RawWebSocket

pytestmark = [
    pytest.mark.e2e,
    # Every protection holds under each async mode (issue 14).
    pytest.mark.parametrize("async_mode", ASYNC_MODES, indirect=True, scope="module"),
]

# ChatWorker's SECRET_KEY: tokens a test signs with it are as good as the worker's own.
WORKER_SECRET = "test-secret-key-shared-by-all-workers"
DAY = 86_400


@pytest.fixture(scope="module")
def user(worker) -> tuple[str, str]:
    return register(worker.url)


def signed(payload: object, secret: str = WORKER_SECRET, *, age_seconds: int = 0) -> str:
    """A token the way the worker signs one, optionally signed `age_seconds` ago."""

    class BackdatedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_seconds

    serializer = URLSafeTimedSerializer(secret, salt=accounts._TOKEN_SALT, signer=BackdatedSigner)
    return serializer.dumps(payload)


def other_user_payload(token: str, uid: int) -> str:
    """The token with its payload swapped for another user's; timestamp and signature kept."""
    _, timestamp, signature = token.rsplit(".", 2)
    payload = base64.urlsafe_b64encode(
        json.dumps({"uid": uid, "name": "admin"}, separators=(",", ":")).encode()
    )
    return f"{payload.decode().rstrip('=')}.{timestamp}.{signature}"


def uid_of(worker, token: str) -> int:
    return accounts.verify_token(token, WORKER_SECRET, DAY).id


# The refusal of a token that is no string, or longer than schemas.MAX_TOKEN_LENGTH: it was
# "auth.token is required", which sent a client holding a token looking for a missing one.
TOKEN_SHAPE = "auth.token must be a string of at most 1024 characters"


def bad_tokens(worker, user) -> dict[str, tuple[object, str]]:
    """name -> (Socket.IO auth payload, the refusal message expected)."""
    name, token = user
    uid = uid_of(worker, token)
    good_payload = {"uid": uid, "name": name}
    head, _, signature = token.rpartition(".")
    return {
        "no auth": (None, "auth.token is required"),
        "empty auth": ({}, "auth.token is required"),
        "empty token": ({"token": ""}, "auth.token is required"),
        "token not a string": ({"token": 12345}, TOKEN_SHAPE),
        "token a list": ({"token": [token]}, TOKEN_SHAPE),
        "auth a string": (token, "auth.token is required"),
        "garbage": ({"token": "not-a-token"}, "invalid token"),
        "oversized": ({"token": token * 20}, TOKEN_SHAPE),
        "3000 characters": ({"token": "t" * 3000}, TOKEN_SHAPE),
        "1024 characters": ({"token": "t" * 1024}, "invalid token"),
        "token with NUL": ({"token": token + "\u0000"}, "invalid token"),
        "forged: other secret": (
            {"token": signed(good_payload, "guessed-secret")},
            "invalid token",
        ),
        "tampered signature": ({"token": head + "." + signature[::-1]}, "invalid token"),
        "tampered payload": ({"token": other_user_payload(token, uid + 1)}, "invalid token"),
        "expired": ({"token": signed(good_payload, age_seconds=2 * DAY)}, "token expired"),
        "well signed, no uid": ({"token": signed({"name": name})}, "invalid token"),
        "well signed, uid not int": (
            {"token": signed({"uid": str(uid), "name": name})},
            "invalid token",
        ),
    }


CASES = [
    "no auth",
    "empty auth",
    "empty token",
    "token not a string",
    "token a list",
    "auth a string",
    "garbage",
    "oversized",
    "3000 characters",
    "1024 characters",
    "token with NUL",
    "forged: other secret",
    "tampered signature",
    "tampered payload",
    "expired",
    "well signed, no uid",
    "well signed, uid not int",
]


@pytest.mark.parametrize("case", CASES)
def test_socketio_connect_refused(worker, user, case):
    auth, message = bad_tokens(worker, user)[case]
    raw = RawWebSocket(worker.url)
    try:
        if auth is None:
            raw.send("40")
            answer = raw.recv()
        else:
            answer = raw.connect(auth)
        assert answer.startswith("44"), answer
        assert json.loads(answer[2:]) == {
            "message": "unauthorized",
            "data": {"code": "unauthorized", "message": message},
        }
        # Refused means refused: an event on the unconnected namespace gets no answer. The
        # marker: a good CONNECT on the same connection, then a second join; the server
        # answers in order, so an ack to the first join would come before the second's.
        raw.send('421["join",{"room":"general"}]')
        connected = raw.connect({"token": user[1]})
        assert connected.startswith("40{"), connected
        raw.send('422["join",{"room":"general"}]')
        before_marker = []
        for _ in range(50):
            packet = raw.recv()
            if isinstance(packet, str) and packet.startswith("432"):
                break
            before_marker.append(packet)
        else:
            raise AssertionError(f"no ack to the second join: {before_marker}")
        assert json.loads(packet[3:])[0]["ok"] is True
        assert [p for p in before_marker if p.startswith("431")] == []
    finally:
        raw.close()
    assert_still_serving(worker.url, user[1])


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "forged: other secret",
        "tampered signature",
        "expired",
        "well signed, uid not int",
    ],
)
def test_python_socketio_client_refused(worker, user, case):
    auth, _ = bad_tokens(worker, user)[case]
    with pytest.raises(
        socketio.exceptions.ConnectionError, match="^One or more namespaces failed to connect: /$"
    ):
        ChatClient(worker.url, auth["token"])
    assert_still_serving(worker.url, user[1])


@pytest.mark.parametrize(
    "case", ["no auth", "garbage", "forged: other secret", "expired", "tampered payload"]
)
def test_rest_refuses_bad_tokens(worker, user, case):
    auth, message = bad_tokens(worker, user)[case]
    headers = {} if auth is None else {"Authorization": f"Bearer {auth['token']}"}
    for method, path, body in [
        ("GET", "/api/rooms", None),
        ("GET", "/api/rooms/general/messages", None),
        ("POST", "/api/rooms/general/messages", {"text": "sneaky"}),
    ]:
        r = requests.request(method, worker.url + path, json=body, headers=headers, timeout=5)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"]["code"] == "unauthorized"
    assert_still_serving(worker.url, user[1])


def test_authorization_header_variants_refused(worker, user):
    token = user[1]
    for header in [
        f"Token {token}",
        f"Basic {token}",
        f"Bearer{token}",
        "Bearer ",
        token,
        f"Bearer {token}x",
        f"Bearer {token} {token}",
    ]:
        r = requests.get(worker.url + "/api/rooms", headers={"Authorization": header}, timeout=5)
        assert r.status_code == 401, header


@pytest.fixture(scope="module")
def private_room(worker) -> dict:
    """B's private room, with one message in it; A is not a member."""
    b_name, b_token = register(worker.url)
    a_name, a_token = register(worker.url)
    room = f"secret-{uuid.uuid4().hex[:8]}"
    b_headers = {"Authorization": f"Bearer {b_token}"}
    r = requests.post(
        worker.url + "/api/rooms",
        json={"name": room, "private": True},
        headers=b_headers,
        timeout=5,
    )
    assert r.status_code == 201, r.text
    r = requests.post(
        f"{worker.url}/api/rooms/{room}/messages",
        json={"text": "for B's eyes only"},
        headers=b_headers,
        timeout=5,
    )
    assert r.status_code == 201
    return {"room": room, "a_token": a_token, "b_token": b_token, "a_name": a_name}


def test_token_of_a_cannot_use_private_room_of_b_over_socketio(worker, private_room):
    room = private_room["room"]
    a = ChatClient(worker.url, private_room["a_token"])
    b = ChatClient(worker.url, private_room["b_token"])
    try:
        refusals = {
            "join": a.call("join", {"room": room}),
            "join since": a.call("join", {"room": room, "since": 0}),
            "message": a.call(
                "message", {"room": room, "text": "let me in", "client_id": uuid.uuid4().hex}
            ),
            "typing": a.call("typing", {"room": room}),
        }
        for what, ack in refusals.items():
            assert ack["ok"] is False and ack["error"]["code"] == "forbidden", (what, ack)
            assert "messages" not in ack and "message" not in ack, (what, ack)
        # B talks in the room; nothing of it reaches A.
        assert b.join(room)["ok"]
        sent = b.send(room, "still private")
        assert sent["ok"]
        b.wait_for("message", lambda m: m["id"] == sent["message"]["id"])
        assert b.call("typing", {"room": room}) == {"ok": True}
        # The marker: B's message in a room both are in, sent after the private one on the
        # same worker; once A has it, whatever of the private room was to reach A has.
        marker_room = f"marker-{uuid.uuid4().hex[:8]}"
        assert a.join(marker_room)["ok"] and b.join(marker_room)["ok"]
        marker = b.send(marker_room, "marker")
        assert marker["ok"]
        a.wait_for("message", lambda m: m["id"] == marker["message"]["id"])
        assert [m for m in a.received("message") if m["room"] == room] == []
        assert [t for t in a.received("typing") if t["room"] == room] == []
        history = b.join(room, since=0)["messages"]
        assert [m["text"] for m in history] == ["for B's eyes only", "still private"]
    finally:
        a.close()
        b.close()
    assert_still_serving(worker.url, private_room["a_token"])


def test_token_of_a_cannot_use_private_room_of_b_over_rest(worker, private_room):
    room = private_room["room"]
    a_headers = {"Authorization": f"Bearer {private_room['a_token']}"}
    r = requests.get(f"{worker.url}/api/rooms/{room}/messages", headers=a_headers, timeout=5)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert "eyes only" not in r.text
    r = requests.get(
        f"{worker.url}/api/rooms/{room}/messages?after=0&limit=100", headers=a_headers, timeout=5
    )
    assert r.status_code == 403
    r = requests.post(
        f"{worker.url}/api/rooms/{room}/messages",
        json={"text": "let me in"},
        headers=a_headers,
        timeout=5,
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = requests.get(f"{worker.url}/api/rooms", headers=a_headers, timeout=5)
    assert room not in {x["name"] for x in r.json()["rooms"]}
    # Taking over the name as a public room is refused too.
    r = requests.post(
        f"{worker.url}/api/rooms",
        json={"name": room, "private": False},
        headers=a_headers,
        timeout=5,
    )
    assert r.status_code == 409
    b_headers = {"Authorization": f"Bearer {private_room['b_token']}"}
    texts = [
        m["text"]
        for m in requests.get(
            f"{worker.url}/api/rooms/{room}/messages", headers=b_headers, timeout=5
        ).json()["messages"]
    ]
    assert "let me in" not in texts
    assert_still_serving(worker.url, private_room["a_token"])
