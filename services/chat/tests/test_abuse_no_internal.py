"""No request, race or input yields `internal`: each is a 4xx (or error ack) with its code.

The kinds found by replaying public bug reports, each over a real worker on SQLite and on
PostgreSQL:

- text that cannot be stored: a lone surrogate ("broken \\ud83d", a JavaScript string cut
  inside an emoji: valid JSON, no UTF-8 encoding) or NUL (PostgreSQL's text refuses it), in
  any field of any payload, REST and Socket.IO alike, and in the URL: `invalid`, no traceback;
- numbers in query strings that int() or a lax parser would take (" 5", "+5", "1e3", Arabic-
  Indic digits) or that overflow a PostgreSQL integer: `invalid`;
- unique-constraint races between concurrent requests (the same username, the same room):
  one succeeds, the others get `conflict`, as they would one after another.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import socketio

from testkit.clients import DEFAULT_PASSWORD, ChatClient, assert_still_serving, register
from testkit.processes import ChatWorker, PostgresDatabase

pytestmark = pytest.mark.e2e

# A lone high surrogate, a lone low one, and NUL: no back-end can store them.
UNSTORABLE = ["broken \ud83d", "\udc00 low", "nul \x00 inside"]
# Concurrent requests per race: enough that several pass the existence check together.
RACERS = 8


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def storage_worker(request, tmp_path_factory) -> Iterator[ChatWorker]:
    """One real worker per storage back-end, shared by the module's tests."""
    workdir = tmp_path_factory.mktemp(f"no-internal-{request.param}")
    database = None
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'chat.db'}"
    else:
        server = os.environ.get("DATABASE_URL", "")
        if not server.startswith(("postgresql", "postgres:")):
            message = "DATABASE_URL does not name a PostgreSQL server (CI sets it)"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        database = PostgresDatabase(server)
        url = database.url
    worker = ChatWorker(workdir, env={"DATABASE_URL": url, "RATE_LIMIT_MESSAGES": "10000"})
    try:
        yield worker
    finally:
        worker.stop()
        if database is not None:
            database.drop()


@pytest.fixture(scope="module")
def account(storage_worker) -> tuple[str, str]:
    return register(storage_worker.url)


def api(worker: ChatWorker, method: str, path: str, token: str | None = None, **kw: Any):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, worker.url + path, headers=headers, timeout=30, **kw)


def assert_invalid(response: requests.Response) -> None:
    assert response.status_code == 400, (response.status_code, response.text)
    body = response.json()
    assert body["error"]["code"] == "invalid", body
    assert body["error"]["message"]


def stored_texts(worker: ChatWorker, token: str, room: str) -> list[str]:
    r = api(worker, "GET", f"/api/rooms/{room}/messages?limit=100", token)
    assert r.status_code == 200, r.text
    return [m["text"] for m in r.json()["messages"]]


# --- text that cannot be stored ----------------------------------------------------------------

# (method, path, JSON body with the bad value put in at "{bad}"); {room} is a fresh room.
REST_FIELDS: list[tuple[str, str, Callable[[str], Any]]] = [
    ("POST", "/api/users", lambda bad: {"username": bad, "password": DEFAULT_PASSWORD}),
    ("POST", "/api/users", lambda bad: {"username": "someone_new", "password": bad * 4}),
    ("POST", "/api/tokens", lambda bad: {"username": bad, "password": DEFAULT_PASSWORD}),
    ("POST", "/api/tokens", lambda bad: {"username": "someone", "password": bad * 4}),
    ("POST", "/api/rooms", lambda bad: {"name": bad}),
    ("POST", "/api/rooms", lambda bad: {"name": "r1", "private": True, "members": [bad]}),
    ("POST", "/api/rooms/{room}/messages", lambda bad: {"text": bad}),
    ("POST", "/api/rooms/{room}/messages", lambda bad: {"text": "hi", "client_id": bad}),
]
REST_IDS = [
    "users.username",
    "users.password",
    "tokens.username",
    "tokens.password",
    "rooms.name",
    "rooms.members",
    "messages.text",
    "messages.client_id",
]


@pytest.mark.parametrize("bad", UNSTORABLE, ids=["high", "low", "nul"])
@pytest.mark.parametrize(("method", "path", "body"), REST_FIELDS, ids=REST_IDS)
def test_rest_field_that_cannot_be_stored_is_invalid(
    storage_worker, account, method, path, body, bad
):
    _, token = account
    room = f"u-{uuid.uuid4().hex[:8]}"
    assert api(storage_worker, "POST", "/api/rooms", token, json={"name": room}).status_code == 201
    before = storage_worker.tracebacks()
    assert_invalid(api(storage_worker, method, path.format(room=room), token, json=body(bad)))
    assert stored_texts(storage_worker, token, room) == []
    assert storage_worker.tracebacks() == before


@pytest.mark.parametrize(
    "room_in_url",
    ["nul%00room", "%ED%A0%BD", "broken%20%ED%A0%BD", "%C0%80", "%FF", "a" * 65],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_room_name_in_the_url_that_no_room_can_have_is_invalid(
    storage_worker, account, room_in_url, method
):
    _, token = account
    before = storage_worker.tracebacks()
    body = {"text": "hi"} if method == "POST" else None
    assert_invalid(
        api(storage_worker, method, f"/api/rooms/{room_in_url}/messages", token, json=body)
    )
    assert storage_worker.tracebacks() == before


# (event, payload with the bad value put in)
SOCKET_FIELDS: list[tuple[str, Callable[[str, str], dict]]] = [
    ("message", lambda room, bad: {"room": room, "text": bad}),
    ("message", lambda room, bad: {"room": room, "text": "hi", "client_id": bad}),
    ("message", lambda room, bad: {"room": bad, "text": "hi"}),
    ("join", lambda room, bad: {"room": bad}),
    ("leave", lambda room, bad: {"room": bad}),
    ("typing", lambda room, bad: {"room": bad}),
]
SOCKET_IDS = ["message.text", "message.client_id", "message.room", "join", "leave", "typing"]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@pytest.mark.parametrize("bad", UNSTORABLE, ids=["high", "low", "nul"])
def test_socketio_field_that_cannot_be_stored_is_invalid(storage_worker, account, transport, bad):
    _, token = account
    room = f"s-{uuid.uuid4().hex[:8]}"
    before = storage_worker.tracebacks()
    client = ChatClient(storage_worker.url, token, transports=[transport])
    try:
        assert client.join(room)["ok"] is True
        for (event, payload), field in zip(SOCKET_FIELDS, SOCKET_IDS, strict=True):
            ack = client.call(event, payload(room, bad))
            assert ack["ok"] is False and ack["error"]["code"] == "invalid", (field, ack)
        # The connection is still usable, and nothing was stored.
        assert client.send(room, "after")["ok"] is True
    finally:
        client.close()
    assert stored_texts(storage_worker, token, room) == ["after"]
    assert storage_worker.tracebacks() == before


@pytest.mark.parametrize("bad", UNSTORABLE, ids=["high", "low", "nul"])
def test_a_connect_token_that_cannot_be_encoded_is_unauthorized(storage_worker, bad):
    before = storage_worker.tracebacks()
    refusals: list[Any] = []
    sio = socketio.Client(reconnection=False)
    sio.on("connect_error", refusals.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(
            storage_worker.url, auth={"token": bad}, transports=["websocket"], wait_timeout=10
        )
    sio.disconnect()
    assert [(r["message"], r["data"]["code"]) for r in refusals] == [
        ("unauthorized", "unauthorized")
    ], refusals
    assert storage_worker.tracebacks() == before


# --- numbers in query strings ------------------------------------------------------------------

LENIENT_NUMBERS = [
    "limit=1e3",
    "limit=5.0",
    "limit=",
    "after=%D9%A3",  # ARABIC-INDIC DIGIT THREE: int() takes it
    "after=%EF%BC%95",  # FULLWIDTH DIGIT FIVE
    "after=%205",
    "after=5%20",
    "after=%2B5",
    "after=-1",
    "after=0x10",
    "after=1_000",
    "after=%00",
    "after=99999999999999999999",  # overflows a PostgreSQL integer (and a bigint)
    "before=2147483648",  # one past a PostgreSQL integer
    "limit=101",
    "limit=0",
]


@pytest.mark.parametrize("query", LENIENT_NUMBERS)
def test_a_query_number_that_is_not_plain_decimal_in_range_is_invalid(
    storage_worker, account, query
):
    _, token = account
    before = storage_worker.tracebacks()
    assert_invalid(api(storage_worker, "GET", f"/api/rooms/general/messages?{query}", token))
    assert storage_worker.tracebacks() == before


@pytest.mark.parametrize(
    "query",
    [q for q in LENIENT_NUMBERS if q.startswith("limit=")]
    + ["limit=%2B5", "limit=%205", "limit=%D9%A3", "limit=0x10", "limit=1_0"],
)
def test_the_public_room_pages_limit_is_plain_decimal_in_range(storage_worker, account, query):
    _, token = account
    before = storage_worker.tracebacks()
    assert_invalid(api(storage_worker, "GET", f"/api/rooms?scope=public&{query}", token))
    assert storage_worker.tracebacks() == before
    r = api(storage_worker, "GET", "/api/rooms?scope=public&limit=100", token)
    assert r.status_code == 200 and r.json()["more"] is False


def test_plain_decimal_query_numbers_at_their_bounds_are_accepted(storage_worker, account):
    _, token = account
    r = api(storage_worker, "POST", "/api/rooms", token, json={"name": "bounds"})
    assert r.status_code == 201, r.text  # each storage worker has its own fresh database
    r = api(storage_worker, "GET", "/api/rooms/bounds/messages?after=2147483647&limit=100", token)
    assert r.status_code == 200 and r.json() == {"messages": [], "more": False}
    r = api(storage_worker, "GET", "/api/rooms/bounds/messages?before=0&limit=1", token)
    assert r.status_code == 200 and r.json() == {"messages": [], "more": False}


# --- unique-constraint races -------------------------------------------------------------------


def race(count: int, request: Callable[[int], requests.Response]) -> list[requests.Response]:
    """`count` requests released together from threads of their own; their responses."""
    barrier = threading.Barrier(count)
    responses: list[requests.Response | None] = [None] * count

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        responses[i] = request(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(r is not None for r in responses), "a racer did not finish"
    return responses  # type: ignore[return-value]


def assert_one_created_rest_conflict(responses: list[requests.Response]) -> None:
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (len(responses) - 1), [
        (r.status_code, r.text[:120]) for r in responses
    ]
    for r in responses:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "conflict"


def test_concurrent_registrations_of_one_username_one_wins_the_rest_conflict(storage_worker):
    name = f"race{uuid.uuid4().hex[:8]}"
    responses = race(
        RACERS,
        lambda i: api(
            storage_worker, "POST", "/api/users", json={"username": name, "password": "p" * 12}
        ),
    )
    assert_one_created_rest_conflict(responses)


@pytest.mark.parametrize("private", [False, True], ids=["public", "private"])
def test_concurrent_creations_of_one_room_one_wins_the_rest_conflict(
    storage_worker, account, private
):
    _, token = account
    for _ in range(3):  # a race is a chance, not a certainty: run it a few times
        room = f"race-{uuid.uuid4().hex[:8]}"
        responses = race(
            RACERS,
            lambda i, room=room: api(
                storage_worker, "POST", "/api/rooms", token, json={"name": room, "private": private}
            ),
        )
        assert_one_created_rest_conflict(responses)
        winner = next(r for r in responses if r.status_code == 201).json()
        assert winner["name"] == room and winner["private"] is private


def test_concurrent_sends_with_one_client_id_store_one_message(storage_worker, account):
    """The same (user, client_id) from racing requests: one message; in another room, conflict."""
    _, token = account
    rooms = [f"cid-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for room in rooms:
        assert (
            api(storage_worker, "POST", "/api/rooms", token, json={"name": room}).status_code == 201
        )
    client_id = uuid.uuid4().hex
    responses = race(
        RACERS,
        lambda i: api(
            storage_worker,
            "POST",
            f"/api/rooms/{rooms[i % 2]}/messages",
            token,
            json={"text": "once", "client_id": client_id},
        ),
    )
    created = [r for r in responses if r.status_code == 201]
    conflicts = [r for r in responses if r.status_code == 409]
    assert len(created) + len(conflicts) == RACERS, [(r.status_code, r.text) for r in responses]
    assert len({r.json()["id"] for r in created}) == 1
    winner = created[0].json()["room"]
    assert all(r.json()["room"] == winner for r in created)
    assert len(created) == RACERS // 2  # every racer in the winner's room got the message
    assert all(r.json()["error"]["code"] == "conflict" for r in conflicts)
    assert [stored_texts(storage_worker, token, room) for room in rooms] == [
        ["once"] if room == winner else [] for room in rooms
    ]


def test_concurrent_joins_of_a_new_room_all_enter_the_one_room(storage_worker, account):
    _, token = account
    room = f"joinrace-{uuid.uuid4().hex[:8]}"
    clients = [ChatClient(storage_worker.url, token) for _ in range(RACERS)]
    acks: list[dict | None] = [None] * RACERS
    barrier = threading.Barrier(RACERS)

    def join(i: int) -> None:
        barrier.wait(timeout=30)
        acks[i] = clients[i].join(room)

    try:
        threads = [threading.Thread(target=join, args=(i,)) for i in range(RACERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert acks == [{"ok": True, "room": room, "messages": []}] * RACERS
        assert clients[0].send(room, "one room")["ok"] is True
    finally:
        for c in clients:
            c.close()
    assert stored_texts(storage_worker, token, room) == ["one room"]
    rooms = api(storage_worker, "GET", "/api/rooms", token).json()["rooms"]
    assert [r["name"] for r in rooms].count(room) == 1
    assert_still_serving(storage_worker.url, token)


# --- a token whose user is gone ----------------------------------------------------------------


def test_a_token_for_a_user_that_no_longer_exists_is_unauthorized(start_worker, postgres_url):
    """A token signed before the database was reset (the key kept): the session check finds
    no user, so connect and REST refuse it `unauthorized` (log in again), never `internal`."""
    from chat.domain.accounts import Principal, issue_token

    worker = start_worker(DATABASE_URL=postgres_url)
    ghost = issue_token(
        Principal(id=10**6, username="ghost"), "test-secret-key-shared-by-all-workers"
    )
    client = socketio.Client(reconnection=False)
    errors: list = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(worker.url, auth={"token": ghost}, transports=["websocket"], wait_timeout=5)
    assert [e["data"]["code"] for e in errors] == ["unauthorized"]
    for method, path, body in [
        ("GET", "/api/rooms", None),
        ("POST", "/api/rooms/general/messages", {"text": "boo"}),
        ("POST", "/api/rooms", {"name": f"ghost-{uuid.uuid4().hex[:6]}"}),
    ]:
        r = api(worker, method, path, ghost, json=body)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
    assert worker.tracebacks() == 0


# --- events no handler takes -------------------------------------------------------------------


@pytest.mark.parametrize("event", ["no_such_event", "Message", "on_message", "_rooms_of", "\ud83d"])
def test_an_event_no_handler_takes_gets_the_error_ack_invalid(storage_worker, account, event):
    _, token = account
    client = ChatClient(storage_worker.url, token)
    try:
        ack = client.call(event, {"room": "general", "text": "hi"})
        assert ack == {"ok": False, "error": {"code": "invalid", "message": "unknown event"}}
        assert client.join("general")["ok"] is True
    finally:
        client.close()
