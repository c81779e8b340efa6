"""Accounts: registration, password checks, signed bearer tokens and ending sessions.

A token is signed (itsdangerous) and names the user, a random token id (`jti`) and the
instant it was issued (`iat`, ms). It is valid while its signature holds, it is younger than
TOKEN_TTL_SECONDS, it was issued after the user's `tokens_valid_after` ("log out everywhere",
a password change) and its id is not revoked ("log out" on one device).
"""

from __future__ import annotations

import heapq
import itertools
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete, exists, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, Forbidden, Unauthorized
from ..extensions import db
from ..green import run_native
from ..models import Membership, Room, SessionClock, TokenRevocation, User

# argon2id at RFC 9106's second recommended setting scaled to OWASP's floor (19 MiB, t=2):
# ~20 ms per hash here, run on a native thread so it never stalls the hub.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# A hash to verify against when the user does not exist, so timing does not reveal names.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
_TOKEN_SALT = "chat.token.v1"
# Every new account starts in the lobby (created by migration 0001), so its room list is
# never empty; leaving it for good is `DELETE /api/rooms/general/members/<you>`.
LOBBY_ROOM = "general"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    id: int
    username: str
    # The token it came from: its id (None for tokens issued before ids existed) and when it
    # was issued (ms since the epoch).
    jti: str | None = None
    issued_ms: int = 0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _password_matches(hash_: str, password: str) -> bool:
    """argon2 verification, as a boolean.

    Runs on the native thread pool, where an exception (argon2 raises on every mismatch) is
    printed with its traceback by gevent's pool before it reaches us: 150 wrong passwords
    wrote 150 tracebacks. A result is not.
    """
    try:
        return _hasher.verify(hash_, password)
    except (VerificationError, InvalidHashError):
        return False


def register(username: str, password: str) -> User:
    """Create a user; Conflict if the name is taken (names compare case-insensitively).

    The new user is a member of the lobby room `general`, read up to its newest message.
    """
    if db.session.scalar(select(User.id).where(db.func.lower(User.username) == username.lower())):
        raise Conflict(f"username {username!r} is taken")
    user = User(username=username, password_hash=run_native(_hasher.hash, password))
    db.session.add(user)
    try:
        db.session.flush()
        db.session.execute(
            insert(Membership).from_select(
                ["room_id", "user_id", "last_read_seq"],
                select(Room.id, literal(user.id), Room.last_seq).where(Room.name == LOBBY_ROOM),
            )
        )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"username {username!r} is taken") from None
    return user


def authenticate(username: str, password: str) -> User:
    """The user with these credentials (the name in any case); Unauthorized otherwise."""
    user = db.session.scalar(select(User).where(db.func.lower(User.username) == username.lower()))
    matches = run_native(_password_matches, user.password_hash if user else _DUMMY_HASH, password)
    if not matches or user is None:
        raise Unauthorized("wrong username or password")
    return user


# A people picker shows one screenful of matches.
USER_SEARCH_LIMIT = 20


def search_users(prefix: str, limit: int = USER_SEARCH_LIMIT) -> list[dict]:
    """Users whose name starts with `prefix`, case-insensitively, by name: [{username}]."""
    rows = db.session.scalars(
        select(User.username)
        .where(db.func.lower(User.username).startswith(prefix.lower(), autoescape=True))
        .order_by(db.func.lower(User.username))
        .limit(limit)
    )
    return [{"username": name} for name in rows]


def change_password(principal: Principal, current: str, new: str) -> None:
    """Set a new password and end every session of the user (every token, this one too).

    Forbidden if `current` is not the user's password.
    """
    user = db.session.get(User, principal.id)
    if user is None:
        raise Unauthorized("no such user")
    if not run_native(_password_matches, user.password_hash, current):
        raise Forbidden("the current password is wrong")
    password_hash = run_native(_hasher.hash, new)
    version = _tick()
    user.password_hash = password_hash
    user.tokens_valid_after = max(_now_ms(), user.tokens_valid_after + 1)
    user.ended_version = version
    db.session.commit()


def issue_token(user: User | Principal, secret_key: str) -> str:
    """A new token for the user, issued after every session the user has ended."""
    # Strictly after tokens_valid_after even within the same millisecond as a "log out
    # everywhere", so the new session is not born ended.
    issued = max(_now_ms(), (getattr(user, "tokens_valid_after", 0) or 0) + 1)
    return URLSafeTimedSerializer(secret_key, salt=_TOKEN_SALT).dumps(
        {"uid": user.id, "name": user.username, "jti": secrets.token_hex(16), "iat": issued}
    )


def verify_token(token: str | None, secret_key: str, max_age: int) -> Principal:
    """The principal a token names; Unauthorized if missing, forged or expired.

    Checks the signature and age only; `require_live_session` checks it was not ended.
    """
    if not token:
        raise Unauthorized("missing token")
    try:
        data, signed_at = URLSafeTimedSerializer(secret_key, salt=_TOKEN_SALT).loads(
            token, max_age=max_age, return_timestamp=True
        )
    except SignatureExpired:
        raise Unauthorized("token expired") from None
    except BadSignature:
        raise Unauthorized("invalid token") from None
    if not isinstance(data, dict) or not isinstance(data.get("uid"), int):
        raise Unauthorized("invalid token")
    jti, issued = data.get("jti"), data.get("iat")
    principal = Principal(
        id=data["uid"],
        username=str(data.get("name", "")),
        jti=jti if isinstance(jti, str) else None,
        issued_ms=issued if isinstance(issued, int) else int(signed_at.timestamp() * 1000),
    )
    # itsdangerous counts the age in whole seconds; the open sockets' check counts in ms:
    # both refuse a token at the same instant.
    if _now_ms() - principal.issued_ms > max_age * 1000:
        raise Unauthorized("token expired")
    return principal


def require_live_session(principal: Principal) -> Principal:
    """The principal again if its session was not ended; Unauthorized otherwise (one query)."""
    revoked = (
        exists().where(TokenRevocation.jti == principal.jti) if principal.jti else literal(False)
    )
    row = db.session.execute(
        select(User.tokens_valid_after, revoked).where(User.id == principal.id)
    ).one_or_none()
    if row is None:
        raise Unauthorized("no such user")
    valid_after, is_revoked = row
    if is_revoked or principal.issued_ms <= valid_after:
        raise Unauthorized("session ended: log in again")
    return principal


def authenticate_token(token: str | None, secret_key: str, max_age: int) -> Principal:
    """verify_token, then require_live_session: what REST and Socket.IO connects accept."""
    return require_live_session(verify_token(token, secret_key, max_age))


def end_session(principal: Principal, max_age: int) -> None:
    """Revoke the token the principal came from ("log out" here).

    A token without an id (issued before ids existed) cannot be told apart from the user's
    others: all of the user's sessions end.
    """
    if principal.jti is None:
        end_all_sessions(principal)
        return
    version = _tick()
    now = _now_ms()
    # Revocations outlive their tokens by nothing: past expires_at the token is refused as
    # expired, so the table holds only tokens that would still be valid.
    db.session.execute(delete(TokenRevocation).where(TokenRevocation.expires_at < now))
    db.session.add(
        TokenRevocation(
            jti=principal.jti,
            user_id=principal.id,
            expires_at=principal.issued_ms + max_age * 1000,
            ended_version=version,
        )
    )
    try:
        db.session.commit()
    except IntegrityError:  # revoked twice at once: it is revoked
        db.session.rollback()


def end_all_sessions(principal: Principal) -> None:
    """End every token of the user issued until now ("log out everywhere")."""
    user = db.session.get(User, principal.id)
    if user is not None:
        version = _tick()
        user.tokens_valid_after = max(_now_ms(), user.tokens_valid_after)
        user.ended_version = version
        db.session.commit()


# Every this many checks, each open token is looked up in full again (as at its first
# check), not only what the session clock says changed: a change written without moving the
# clock (a worker still on code from before 0004 during a rolling deploy; a script writing
# users.tokens_valid_after or token_revocations directly) reaches this worker's sockets
# within this many checks. 30 is a minute at the default SESSION_CHECK_SECONDS of 2; a full
# check of 8,000 distinct tokens costs ~60-100 ms of CPU on PostgreSQL, 0.15-0.2 % of a core
# spread over that minute with the other checks (docs/BENCHMARKS.md).
FULL_CHECK_EVERY = 30


class OpenSessions:
    """One worker's open sockets and the tokens they hold: sid -> Principal, indexed by token.

    Many sockets may share one token (a browser's tabs), so the session check works per
    token, never per socket, and keeps what it learnt between checks: a token is looked up
    in full once, at the first check after its first socket opened; afterwards only the
    sessions ended anywhere since the previous check are read (`ended_sessions`). Expiry is
    known at connect time: tokens wait on a heap ordered by when they were issued, so the
    expired ones are found with no query. Every `full_every`-th check looks every open token
    up in full again, so changes that did not move the clock are found too. Kept up to date
    as sockets connect and disconnect (O(1) each, O(log n) for a token's first socket). Not
    locked: one worker's event loop (gevent, eventlet) uses it, and nothing in it waits.
    """

    def __init__(self, full_every: int = FULL_CHECK_EVERY) -> None:
        """`full_every`: every this many checks (>= 1) is a full one (FULL_CHECK_EVERY)."""
        if full_every < 1:
            raise ValueError(f"full_every must be at least 1, not {full_every}")
        self.full_every = full_every
        self._checks_since_full = 0
        self._principals: dict[str, Principal] = {}
        # token -> its open sockets; user id / token id -> the tokens open here.
        self._sids: dict[Principal, set[str]] = {}
        self._by_user: dict[int, set[Principal]] = {}
        self._by_jti: dict[str, set[Principal]] = {}
        # (issued_ms, tie-breaker, token) for open tokens, in issue order; a token whose
        # sockets all closed stays until it reaches the top (then it is skipped) or the heap
        # is rebuilt (_compact).
        self._by_issue: list[tuple[int, int, Principal]] = []
        self._pushes = itertools.count()
        # Open tokens no check has looked up yet, and open tokens found ended: the latter
        # are reported by every check until their sockets close (a disconnect may fail).
        self._unchecked: set[Principal] = set()
        self._ended: set[Principal] = set()
        # The session clock's value (models.SessionClock) the last check read, before
        # looking anything up: every change stamped up to it has been seen. None: no check
        # yet, or none since this worker had no socket.
        self.version: int | None = None

    def __len__(self) -> int:
        return len(self._principals)

    def __contains__(self, sid: object) -> bool:
        return sid in self._principals

    def get(self, sid: str) -> Principal | None:
        """The principal of an open socket, None if the sid is not open here."""
        return self._principals.get(sid)

    def __setitem__(self, sid: str, principal: Principal) -> None:
        """A socket opened with this principal (replaces what the sid held, if anything)."""
        self.pop(sid)
        self._principals[sid] = principal
        sids = self._sids.get(principal)
        if sids is not None:
            sids.add(sid)
            return
        self._sids[principal] = {sid}
        self._by_user.setdefault(principal.id, set()).add(principal)
        if principal.jti is not None:
            self._by_jti.setdefault(principal.jti, set()).add(principal)
        self._unchecked.add(principal)
        heapq.heappush(self._by_issue, (principal.issued_ms, next(self._pushes), principal))

    def pop(self, sid: str, default: Principal | None = None) -> Principal | None:
        """Forget a closed socket; its principal, or `default` if the sid was not open."""
        principal = self._principals.pop(sid, None)
        if principal is None:
            return default
        sids = self._sids[principal]
        sids.discard(sid)
        if not sids:  # the token's last socket: forget the token
            del self._sids[principal]
            _discard(self._by_user, principal.id, principal)
            if principal.jti is not None:
                _discard(self._by_jti, principal.jti, principal)
            self._unchecked.discard(principal)
            self._ended.discard(principal)
            self._compact()
        return principal

    def _compact(self) -> None:
        # Closed tokens leave the heap only when they reach its top (up to a TTL later):
        # with reconnects it would grow without bound. Rebuilt from the open tokens once
        # they are under half of it: O(1) amortised per token.
        if len(self._by_issue) > 2 * len(self._sids) + 64:
            self._by_issue = [(p.issued_ms, next(self._pushes), p) for p in self._sids]
            heapq.heapify(self._by_issue)

    def tokens_of_user(self, user_id: int) -> set[Principal]:
        """The open tokens of a user (a live set: copy it to keep it)."""
        return self._by_user.get(user_id, set())

    def tokens_with_id(self, jti: str) -> set[Principal]:
        """The open tokens with this id: one, or none."""
        return self._by_jti.get(jti, set())

    def unchecked(self) -> list[Principal]:
        """The open tokens no check has looked up yet."""
        return list(self._unchecked)

    def full_check_due(self) -> bool:
        """Whether the next check is to look every open token up in full."""
        return self._checks_since_full + 1 >= self.full_every

    def open_tokens(self) -> list[Principal]:
        """Every open token (one per token, however many sockets hold it)."""
        return list(self._sids)

    def expire(self, issued_before_ms: int) -> None:
        """Mark ended the open tokens issued before this instant (ms since the epoch)."""
        heap = self._by_issue
        while heap and heap[0][0] < issued_before_ms:
            _, _, principal = heapq.heappop(heap)
            if principal in self._sids:
                self._ended.add(principal)

    def checked(
        self,
        tokens: Iterable[Principal],
        version: int,
        ended: Iterable[Principal],
        full: bool = False,
    ) -> None:
        """Record a check: these tokens were looked up, `ended` found ended, the clock read.

        `full`: it looked up every open token (the count towards the next full check restarts).
        """
        self._checks_since_full = 0 if full else self._checks_since_full + 1
        self._unchecked.difference_update(tokens)
        self._ended.update(token for token in ended if token in self._sids)
        self.version = version if self._sids else None

    def ended(self) -> set[Principal]:
        """The open tokens found ended (expired, revoked, superseded)."""
        return set(self._ended)

    def sids_of(self, tokens: Iterable[Principal]) -> list[str]:
        """The open sockets holding any of these tokens."""
        return [sid for token in tokens for sid in self._sids.get(token, ())]


def _discard(index: dict, key: object, token: Principal) -> None:
    tokens = index[key]
    tokens.discard(token)
    if not tokens:
        del index[key]


def ended_sessions(sessions: OpenSessions, max_age: int) -> list[str]:
    """Of these open sockets, those whose token expired or was ended (their sids).

    The work follows what can have changed, not the number of sockets nor of tokens:
    expired tokens come off the heap (no query); the session clock is read (one row); if it
    moved since the previous check, the sessions ended anywhere meanwhile are two indexed
    queries (`ended_version` above the value that check read); tokens that opened since are
    looked up in full (their users'
    valid-after instants, which of their ids are revoked, in chunks for very many). A token
    found ended is reported again by every check until its sockets close. Every
    `sessions.full_every`-th check looks every open token up in full instead, so a change
    written without moving the clock (code from before 0004 still running in a rolling
    deploy, a direct write) ends its sockets within that many checks. A socket opening
    while the queries run is judged by what they returned (an ended token stays ended) and
    looked up in full at the next check.
    """
    if not len(sessions):
        sessions.version = None  # nothing to follow: the next sockets are looked up in full
        return []
    sessions.expire(_now_ms() - max_age * 1000)
    # The clock first: every change stamped up to `version` is committed, so the queries
    # below see it; one stamped later is found by the next check.
    version = db.session.scalar(select(SessionClock.version).where(SessionClock.id == 1))
    if version is None:
        raise RuntimeError("the session_clock row is missing: run the migrations (0004)")
    full = sessions.full_check_due()
    fresh = sessions.open_tokens() if full else sessions.unchecked()
    since = sessions.version
    valid_after: dict[int, int] = {}
    revoked: set[str] = set()
    gone: set[int] = set()
    # An unmoved clock means nothing ended anywhere since (what is uncommitted now gets a
    # later value): the one-row read is the whole check. A full check reads every open
    # token's current state after the clock, which covers the changes up to `version`.
    if not full and since is not None and version != since:
        changed = db.session.execute(
            select(User.id, User.tokens_valid_after).where(User.ended_version > since)
        )
        valid_after.update((uid, after) for uid, after in changed)
        revoked.update(
            db.session.scalars(
                select(TokenRevocation.jti).where(TokenRevocation.ended_version > since)
            )
        )
    if fresh:
        uids = {token.id for token in fresh}
        found: dict[int, int] = {}
        for chunk in _chunks(uids):
            rows = db.session.execute(
                select(User.id, User.tokens_valid_after).where(User.id.in_(chunk))
            )
            found.update((uid, after) for uid, after in rows)
        valid_after.update(found)
        gone = uids - found.keys()
        for chunk in _chunks({token.jti for token in fresh if token.jti}):
            revoked.update(
                db.session.scalars(
                    select(TokenRevocation.jti).where(TokenRevocation.jti.in_(chunk))
                )
            )
    db.session.rollback()  # end the read transaction: this runs in a long-lived context
    ended: list[Principal] = []
    # Users changed elsewhere are mostly not here: O(changes), not O(tokens).
    for uid, after in valid_after.items():
        ended.extend(t for t in sessions.tokens_of_user(uid) if t.issued_ms <= after)
    for uid in gone:  # a user who is gone ends every token of theirs
        ended.extend(sessions.tokens_of_user(uid))
    for jti in revoked:
        ended.extend(sessions.tokens_with_id(jti))
    sessions.checked(fresh, version, ended, full)
    return sessions.sids_of(sessions.ended())


def _tick() -> int:
    """Move the session clock on by one and return its new value.

    The first write of every transaction that ends sessions: it holds the clock row's lock
    until its commit, so values are handed out in commit order (models.SessionClock).
    """
    # Not after a flush of what the transaction changed so far: the clock row is always the
    # first row it locks, so two transactions never take their rows in opposite orders.
    with db.session.no_autoflush:
        return db.session.execute(
            update(SessionClock)
            .where(SessionClock.id == 1)
            .values(version=SessionClock.version + 1)
            .returning(SessionClock.version)
            .execution_options(synchronize_session=False)
        ).scalar_one()


# Bound parameters per IN list: far under every database's limit (SQLite: 32,766).
_IN_CHUNK = 1000


def _chunks(values: Iterable) -> Iterable[list]:
    items = list(values)
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]
