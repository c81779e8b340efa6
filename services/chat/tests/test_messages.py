"""Posting and reading messages over REST; seq is per room, gapless, in commit order."""

import pytest
from sqlalchemy import event

from chat.extensions import db


def post(client, headers, text, room="general", **extra):
    return client.post(f"/api/rooms/{room}/messages", json={"text": text, **extra}, headers=headers)


def test_a_posted_message_has_the_contract_shape(client, accounts):
    r = post(client, accounts.headers("alice"), "  hello  ", client_id="c-1")
    assert r.status_code == 201
    msg = r.get_json()
    assert set(msg) == {"id", "room", "seq", "user", "text", "created_at", "client_id"}
    assert msg["room"] == "general" and msg["seq"] == 1 and msg["user"] == "alice"
    assert msg["text"] == "hello"  # trimmed
    assert msg["client_id"] == "c-1"
    assert msg["created_at"].endswith("Z")


def test_seq_counts_per_room_from_one(client, accounts):
    headers = accounts.headers("alice")
    client.post("/api/rooms", json={"name": "other"}, headers=headers)
    seqs = [post(client, headers, f"m{i}").get_json()["seq"] for i in range(3)]
    seqs_other = [post(client, headers, f"o{i}", room="other").get_json()["seq"] for i in range(2)]
    assert seqs == [1, 2, 3]
    assert seqs_other == [1, 2]


def test_a_retry_with_the_same_client_id_returns_the_stored_message(client, accounts):
    headers = accounts.headers("alice")
    first = post(client, headers, "once", client_id="retry-me").get_json()
    again = post(client, headers, "once", client_id="retry-me").get_json()
    assert again == first
    history = client.get("/api/rooms/general/messages", headers=headers).get_json()["messages"]
    assert [m["text"] for m in history] == ["once"]


def test_a_retry_leaves_no_gap_in_seq(client, accounts):
    headers = accounts.headers("alice")
    post(client, headers, "once", client_id="retry-gap")
    post(client, headers, "once", client_id="retry-gap")
    assert post(client, headers, "next").get_json()["seq"] == 2


def test_the_acknowledged_message_is_the_stored_one(client, accounts):
    # The payload pushed to the room is built before anything reads the row back.
    headers = accounts.headers("alice")
    acked = [post(client, headers, f"m{i}", client_id=f"c{i}").get_json() for i in range(3)]
    history = client.get("/api/rooms/general/messages", headers=headers).get_json()["messages"]
    assert history == acked


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_a_message_costs_one_statement_and_one_read_for_the_members(
    app, client, accounts
):
    # Stored (with the sender's read position moved) in one statement; then one SELECT of
    # the members' read positions for the `room` notices (realtime/notify.py).
    headers = accounts.headers("alice")
    post(client, headers, "warms the room cache")
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement.split(None, 1)[0])

    with app.app_context():
        engines = list(db.engines.values())
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        assert post(client, headers, "one round trip").status_code == 201
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
    # The first SELECT is REST authentication's session check (is the token ended?); storing
    # the message is the one WITH statement; the last SELECT reads the members' read
    # positions for the `room` notices. A Socket.IO message skips the session check.
    assert statements == ["SELECT", "WITH", "SELECT"]


def test_the_same_client_id_from_another_user_is_a_different_message(client, accounts):
    a = post(client, accounts.headers("alice"), "a", client_id="same").get_json()
    b = post(client, accounts.headers("bob"), "b", client_id="same").get_json()
    assert (a["seq"], b["seq"]) == (1, 2)


def test_reusing_a_client_id_in_another_room_is_a_conflict(client, accounts):
    headers = accounts.headers("alice")
    client.post("/api/rooms", json={"name": "other"}, headers=headers)
    post(client, headers, "a", client_id="cid")
    r = post(client, headers, "b", room="other", client_id="cid")
    assert r.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"text": ""},
        {"text": "   \n\t "},
        {"text": "x" * 4001},
        {"text": 42},
        {"text": None},
        {"text": ["a"]},
        {"text": {"nested": {"deeper": 1}}},
        {},
        {"text": "ok", "client_id": ""},
        {"text": "ok", "client_id": "c" * 65},
        {"text": "ok", "client_id": 7},
        {"text": "ok", "room": "elsewhere"},
    ],
)
def test_bad_messages_are_invalid_and_store_nothing(client, accounts, body):
    headers = accounts.headers("alice")
    r = client.post("/api/rooms/general/messages", json=body, headers=headers)
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "invalid"
    assert client.get("/api/rooms/general/messages", headers=headers).get_json()["messages"] == []
    assert post(client, headers, "next").get_json()["seq"] == 1  # no seq was used up


def test_text_of_4000_characters_is_accepted(client, accounts):
    r = post(client, accounts.headers("alice"), "é" * 4000)
    assert r.status_code == 201


def test_html_and_sql_are_stored_as_text(client, accounts):
    headers = accounts.headers("alice")
    for text in [
        "<script>alert(1)</script>",
        "'; DROP TABLE messages; --",
        "<img src=x onerror=alert(1)>",
    ]:
        assert post(client, headers, text).get_json()["text"] == text
    history = client.get("/api/rooms/general/messages", headers=headers).get_json()["messages"]
    assert len(history) == 3


def test_posting_to_an_unknown_room_is_not_found(client, accounts):
    r = post(client, accounts.headers("alice"), "hi", room="nowhere")
    assert r.status_code == 404
    assert r.get_json()["error"]["code"] == "not_found"


class TestHistory:
    @pytest.fixture
    def seeded(self, client, accounts):
        headers = accounts.headers("alice")
        for i in range(1, 131):
            post(client, headers, f"m{i}")
        return headers

    def seqs(self, client, headers, query=""):
        body = client.get(f"/api/rooms/general/messages{query}", headers=headers).get_json()
        return [m["seq"] for m in body["messages"]], body["more"]

    def test_without_bounds_it_returns_the_latest_50_ascending(self, client, seeded):
        seqs, more = self.seqs(client, seeded)
        assert seqs == list(range(81, 131)) and more

    def test_after_returns_what_follows_in_pages(self, client, seeded):
        assert self.seqs(client, seeded, "?after=10&limit=5") == ([11, 12, 13, 14, 15], True)
        assert self.seqs(client, seeded, "?after=125") == ([126, 127, 128, 129, 130], False)

    def test_before_pages_backwards(self, client, seeded):
        assert self.seqs(client, seeded, "?before=11&limit=100") == (list(range(1, 11)), False)
        assert self.seqs(client, seeded, "?before=100&limit=3") == ([97, 98, 99], True)

    def test_after_and_before_give_a_range(self, client, seeded):
        assert self.seqs(client, seeded, "?after=5&before=9") == ([6, 7, 8], False)

    @pytest.mark.parametrize(
        "query", ["?limit=0", "?limit=101", "?limit=x", "?after=-1", "?before=abc", "?page=2"]
    )
    def test_bad_queries_are_invalid(self, client, seeded, query):
        r = client.get(f"/api/rooms/general/messages{query}", headers=seeded)
        assert r.status_code == 400
        assert r.get_json()["error"]["code"] == "invalid"


def test_unknown_room_history_is_not_found(client, accounts):
    r = client.get("/api/rooms/nowhere/messages", headers=accounts.headers("alice"))
    assert r.status_code == 404
