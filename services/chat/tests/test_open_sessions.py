"""The periodic session check: which of a worker's open sockets hold an ended token.

`OpenSessions` (sid -> principal, indexed by token) and `accounts.ended_sessions` against a
real database (SQLite and PostgreSQL). Many sockets may share a token, as a browser's tabs
do: every one of them is ended with it, and no socket of another token is. The end-to-end
contract (the `session_ended` event, the disconnect, on every worker) is in test_sessions.py.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event, insert, select, update

from chat.domain import accounts
from chat.domain.accounts import OpenSessions, Principal
from chat.extensions import db
from chat.models import SessionClock, TokenRevocation, User

TTL = 3600  # seconds


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def user(name: str) -> User:
    row = User(username=name, password_hash="not-a-hash")
    db.session.add(row)
    db.session.commit()
    return row


def token(u: User, jti: str, issued_ms: int | None = None) -> Principal:
    return Principal(u.id, u.username, jti, now_ms() if issued_ms is None else issued_ms)


def check(sessions: OpenSessions) -> set[str]:
    ended = accounts.ended_sessions(sessions, TTL)
    assert len(ended) == len(set(ended)), ended  # each socket once
    return set(ended)


def test_the_index_follows_sockets_opening_and_closing(ctx):
    alice = user("alice")
    tab = token(alice, "a" * 32)
    sessions = OpenSessions()
    sessions["s1"] = tab
    sessions["s2"] = tab
    assert (len(sessions), sessions.get("s1"), sessions.get("nope")) == (2, tab, None)
    assert sessions.pop("s1") == tab
    assert sessions.pop("s1") is None
    assert (sessions.tokens_of_user(alice.id), sessions.tokens_with_id("a" * 32)) == ({tab}, {tab})
    assert sessions.pop("s2") == tab
    assert len(sessions) == 0
    assert (sessions.tokens_of_user(alice.id), sessions.tokens_with_id("a" * 32)) == (set(), set())
    assert sessions.unchecked() == []


def test_nothing_ended_ends_nothing(ctx):
    alice, bob = user("alice"), user("bob")
    sessions = OpenSessions()
    for n in range(10):
        sessions[f"a{n}"] = token(alice, "a" * 32)
    sessions["b"] = token(bob, "b" * 32)
    assert check(sessions) == set()
    assert check(sessions) == set()


def test_log_out_ends_every_socket_of_that_token_and_no_other(ctx):
    alice, bob = user("alice"), user("bob")
    tabs, phone, bobs = token(alice, "a" * 32), token(alice, "c" * 32), token(bob, "b" * 32)
    sessions = OpenSessions()
    for sid in ("t1", "t2", "t3"):
        sessions[sid] = tabs
    sessions["p"] = phone
    sessions["b"] = bobs
    assert check(sessions) == set()

    accounts.end_session(tabs, TTL)
    assert check(sessions) == {"t1", "t2", "t3"}
    # Reported again until they close (a disconnect that failed is retried), then gone.
    assert check(sessions) == {"t1", "t2", "t3"}
    for sid in ("t1", "t2", "t3"):
        sessions.pop(sid)
    assert check(sessions) == set()
    assert (sessions.get("p"), sessions.get("b")) == (phone, bobs)


def test_log_out_everywhere_ends_every_token_of_the_user_and_no_one_else(ctx):
    alice, bob = user("alice"), user("bob")
    sessions = OpenSessions()
    sessions["a1"] = sessions["a2"] = token(alice, "a" * 32)
    sessions["a3"] = token(alice, "c" * 32)
    sessions["b"] = token(bob, "b" * 32)
    assert check(sessions) == set()

    accounts.end_all_sessions(Principal(alice.id, "alice"))
    assert check(sessions) == {"a1", "a2", "a3"}
    # A token issued after it lives on, on a socket that opened meanwhile.
    db.session.refresh(alice)
    fresh = Principal(alice.id, "alice", "d" * 32, alice.tokens_valid_after + 1)
    db.session.rollback()
    sessions["a4"] = fresh
    assert check(sessions) == {"a1", "a2", "a3"}


def test_a_socket_that_opens_with_an_already_ended_token_is_ended_at_the_next_check(ctx):
    alice = user("alice")
    stale = token(alice, "a" * 32)
    sessions = OpenSessions()
    sessions["first"] = token(alice, "c" * 32)
    assert check(sessions) == set()
    # Ended between the connect's own check and the socket's registration here.
    accounts.end_session(stale, TTL)
    sessions["late"] = stale
    assert check(sessions) == {"late"}


def test_an_expired_token_ends_without_any_change_in_the_database(ctx):
    alice = user("alice")
    sessions = OpenSessions()
    sessions["old1"] = sessions["old2"] = token(alice, "a" * 32, now_ms() - TTL * 1000 - 1)
    sessions["young"] = token(alice, "c" * 32, now_ms() - TTL * 1000 + 60_000)
    assert check(sessions) == {"old1", "old2"}
    assert check(sessions) == {"old1", "old2"}
    sessions.pop("old1")
    sessions.pop("old2")
    assert check(sessions) == set()


def test_a_token_of_a_user_who_is_gone_is_ended(ctx):
    alice = user("alice")
    sessions = OpenSessions()
    sessions["ghost"] = Principal(alice.id + 1000, "ghost", "g" * 32, now_ms())
    sessions["alice"] = token(alice, "a" * 32)
    assert check(sessions) == {"ghost"}


def test_a_token_without_an_id_is_ended_by_log_out_everywhere(ctx):
    alice = user("alice")
    old_style = Principal(alice.id, "alice", None, now_ms())
    sessions = OpenSessions()
    sessions["old"] = old_style
    sessions["new"] = token(alice, "a" * 32, now_ms() + 10_000)  # issued after the end
    assert check(sessions) == set()
    accounts.end_session(old_style, TTL)  # no id: ends every session of the user until now
    assert check(sessions) == {"old"}


def test_every_way_of_ending_sessions_moves_the_clock_and_stamps_the_change(ctx):
    alice = accounts.register("alice", "the password")

    def clock() -> int:
        return db.session.scalar(select(SessionClock.version))

    start = clock()
    accounts.end_session(token(alice, "a" * 32), TTL)
    assert clock() == start + 1
    assert db.session.get(TokenRevocation, "a" * 32).ended_version == start + 1
    accounts.end_all_sessions(Principal(alice.id, "alice"))
    db.session.refresh(alice)
    assert (clock(), alice.ended_version) == (start + 2, start + 2)
    accounts.change_password(Principal(alice.id, "alice"), "the password", "a new password")
    db.session.refresh(alice)
    assert (clock(), alice.ended_version) == (start + 3, start + 3)


@pytest.fixture
def statements(ctx):
    """The SQL statements run while the test runs (text, parameters)."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_once_every_token_was_looked_up_a_check_reads_only_what_changed(ctx, statements):
    users = [user(f"user{n}") for n in range(50)]
    sessions = OpenSessions()
    for n, u in enumerate(users):
        sessions[f"s{n}"] = sessions[f"t{n}"] = token(u, f"{n:032x}")
    assert check(sessions) == set()  # the first check looks every token up
    statements.clear()

    assert check(sessions) == set()
    # Nothing ended anywhere: the session clock's one row is all that is read.
    assert [sql.split()[:2] for sql, _ in statements] == [["SELECT", "session_clock.version"]]

    # Sessions ended elsewhere, for users with no socket here, end nothing here: the clock,
    # then the users and the revocations stamped after the previous check; no list of this
    # worker's users or tokens, however many are open.
    elsewhere = user("elsewhere")
    accounts.end_all_sessions(Principal(elsewhere.id, "elsewhere"))
    accounts.end_session(token(elsewhere, "e" * 32), TTL)
    statements.clear()
    assert check(sessions) == set()
    assert len(statements) == 3, statements
    assert all(" IN " not in sql.upper() for sql, _ in statements), statements
    accounts.end_session(sessions.get("s7"), TTL)
    assert check(sessions) == {"s7", "t7"}


def test_a_worker_without_sockets_looks_the_next_ones_up_in_full(ctx):
    alice = user("alice")
    sessions = OpenSessions()
    sessions["a"] = token(alice, "a" * 32)
    assert check(sessions) == set()
    assert sessions.version is not None
    sessions.pop("a")
    assert check(sessions) == set()
    assert sessions.version is None
    revoked = token(alice, "c" * 32)
    accounts.end_session(revoked, TTL)
    sessions["c"] = revoked
    assert check(sessions) == {"c"}


def test_closed_tokens_do_not_pile_up_on_the_expiry_heap(ctx):
    alice = user("alice")
    sessions = OpenSessions()
    sessions["keep"] = token(alice, "k" * 32)
    for n in range(1000):  # reconnects, each with a token of its own
        sessions[f"s{n}"] = token(alice, f"{n:032x}")
        sessions.pop(f"s{n}")
    assert len(sessions._by_issue) <= 2 * 1 + 64 + 1


def test_a_session_ended_while_a_check_runs_is_found_by_the_next_one(ctx):
    """The race the clock is for: a change not yet committed when a check reads the clock."""
    alice, bob = user("alice"), user("bob")
    tab = token(alice, "a" * 32)
    sessions = OpenSessions()
    sessions["tab"] = tab
    sessions["bob"] = token(bob, "b" * 32)
    assert check(sessions) == set()

    # Another worker's logout, on a connection of its own: stamped, not yet committed.
    with db.engine.connect() as other:
        version = other.execute(
            update(SessionClock)
            .values(version=SessionClock.version + 1)
            .returning(SessionClock.version)
        ).scalar_one()
        other.execute(
            insert(TokenRevocation).values(
                jti=tab.jti, user_id=alice.id, expires_at=now_ms() + 60_000, ended_version=version
            )
        )
        assert check(sessions) == set()  # not visible yet: this check read the clock before it
        other.commit()
    assert check(sessions) == {"tab"}


def test_a_change_that_did_not_move_the_clock_is_found_by_the_next_full_check(ctx):
    """What a worker still on the code from before 0004 writes, in a rolling deploy (or a
    script writing the tables directly): ended sessions with no clock tick and no stamp."""
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    tabs, phone = token(alice, "a" * 32), token(alice, "c" * 32)
    bobs, carols = token(bob, "b" * 32), token(carol, "d" * 32)
    sessions = OpenSessions(full_every=3)
    sessions["t1"] = sessions["t2"] = tabs
    sessions["p"] = phone
    sessions["b1"] = sessions["b2"] = bobs
    sessions["c"] = carols
    assert check(sessions) == set()  # check 1: every token looked up (its first check)

    # The old code's log out (alice's tabs) and log out everywhere (bob), behind accounts'
    # back: ended_version keeps its default, the session clock does not move.
    db.session.execute(
        insert(TokenRevocation).values(
            jti=tabs.jti, user_id=alice.id, expires_at=now_ms() + TTL * 1000
        )
    )
    db.session.execute(update(User).where(User.id == bob.id).values(tokens_valid_after=now_ms()))
    db.session.commit()
    assert check(sessions) == set()  # check 2: only what the clock says changed: nothing
    assert check(sessions) == {"t1", "t2", "b1", "b2"}  # check 3: every token, in full
    assert check(sessions) == {"t1", "t2", "b1", "b2"}  # reported until the sockets close
    assert [sessions.get(sid) for sid in ("p", "c")] == [phone, carols]


def test_every_full_every_th_check_looks_every_open_token_up(ctx, statements):
    users = [user(f"user{n}") for n in range(3)]
    sessions = OpenSessions(full_every=2)
    for n, u in enumerate(users):
        sessions[f"s{n}"] = token(u, f"{n:032x}")
    looked_up = []
    for _ in range(5):
        statements.clear()
        assert check(sessions) == set()
        looked_up.append(any(" IN " in sql.upper() for sql, _ in statements))
    # The first (new tokens), then every second one after it.
    assert looked_up == [True, True, False, True, False]


def test_full_every_below_one_is_refused():
    with pytest.raises(ValueError, match="^full_every must be at least 1, not 0$"):
        OpenSessions(full_every=0)
