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
from sqlalchemy import delete, exists, insert, literal, select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, Forbidden, Unauthorized
from ..extensions import db
from ..green import run_native
from ..models import Membership, Room, TokenRevocation, User

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
    user.password_hash = run_native(_hasher.hash, new)
    user.tokens_valid_after = max(_now_ms(), user.tokens_valid_after + 1)
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
    now = _now_ms()
    # Revocations outlive their tokens by nothing: past expires_at the token is refused as
    # expired, so the table holds only tokens that would still be valid.
    db.session.execute(delete(TokenRevocation).where(TokenRevocation.expires_at < now))
    db.session.add(
        TokenRevocation(
            jti=principal.jti, user_id=principal.id, expires_at=principal.issued_ms + max_age * 1000
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
        user.tokens_valid_after = max(_now_ms(), user.tokens_valid_after)
        db.session.commit()


class OpenSessions:
    """One worker's open sockets and the tokens they hold: sid -> Principal, indexed by token.

    Many sockets may share one token (a browser's tabs), so the session check works per
    token, not per socket: a token's user, id and expiry are looked at once however many
    sockets hold it. Kept up to date as sockets connect and disconnect (O(1) each); expiry is
    known at connect time, so tokens wait on a heap ordered by when they were issued and
    no query is needed to find the expired ones.
    """

    def __init__(self) -> None:
        self._principals: dict[str, Principal] = {}
        # token -> its open sockets; user id / token id -> the tokens open here.
        self._sids: dict[Principal, set[str]] = {}
        self._by_user: dict[int, set[Principal]] = {}
        self._by_jti: dict[str, set[Principal]] = {}
        # (issued_ms, tie-breaker, token) for every open token, in issue order; a token whose
        # sockets all closed stays until it reaches the top (then it is skipped).
        self._by_issue: list[tuple[int, int, Principal]] = []
        self._pushes = itertools.count()
        # Tokens taken off the heap as expired whose sockets are still open: reported by
        # every check until they close (the disconnect may fail or lag).
        self._expired: set[Principal] = set()

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
        heapq.heappush(self._by_issue, (principal.issued_ms, next(self._pushes), principal))

    def pop(self, sid: str, default: Principal | None = None) -> Principal | None:
        """Forget a closed socket; its principal, or `default` if the sid was not open."""
        principal = self._principals.pop(sid, None)
        if principal is None:
            return default
        sids = self._sids[principal]
        sids.discard(sid)
        if not sids:  # the token's last socket: forget the token (the heap skips it later)
            del self._sids[principal]
            _discard(self._by_user, principal.id, principal)
            if principal.jti is not None:
                _discard(self._by_jti, principal.jti, principal)
            self._expired.discard(principal)
        return principal

    def user_ids(self) -> list[int]:
        """The users with an open token here."""
        return list(self._by_user)

    def token_ids(self) -> list[str]:
        """The ids of the open tokens (tokens issued before ids existed have none)."""
        return list(self._by_jti)

    def tokens_of_user(self, user_id: int) -> set[Principal]:
        return self._by_user.get(user_id, set())

    def tokens_with_id(self, jti: str) -> set[Principal]:
        return self._by_jti.get(jti, set())

    def expired(self, issued_before_ms: int) -> set[Principal]:
        """The open tokens issued before this instant (ms since the epoch).

        Amortised O(log n) per token over its life: each is taken off the heap once.
        """
        heap = self._by_issue
        while heap and heap[0][0] < issued_before_ms:
            _, _, principal = heapq.heappop(heap)
            if principal in self._sids:
                self._expired.add(principal)
        return set(self._expired)

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

    Per token, not per socket: expiry from the heap (no query); two queries over the
    distinct users and token ids (in chunks for very many): the users' valid-after instants
    and which of the token ids are revoked. A socket that opens while the queries run is
    judged by what they returned (an ended token stays ended) or at the next check.
    """
    if not len(sessions):
        return []
    ended = sessions.expired(_now_ms() - max_age * 1000)
    uids = sessions.user_ids()
    jtis = sessions.token_ids()
    valid_after: dict[int, int] = {}
    for chunk in _chunks(uids):
        rows = db.session.execute(
            select(User.id, User.tokens_valid_after).where(User.id.in_(chunk))
        )
        valid_after.update((uid, after) for uid, after in rows)
    revoked: set[str] = set()
    for chunk in _chunks(jtis):
        revoked.update(
            db.session.scalars(select(TokenRevocation.jti).where(TokenRevocation.jti.in_(chunk)))
        )
    db.session.rollback()  # end the read transaction: this runs in a long-lived context
    for uid in uids:
        after = valid_after.get(uid)
        tokens = sessions.tokens_of_user(uid)
        # A user who is gone ends every token of theirs.
        ended.update(tokens if after is None else (t for t in tokens if t.issued_ms <= after))
    for jti in revoked:
        ended.update(sessions.tokens_with_id(jti))
    return sessions.sids_of(ended)


# Bound parameters per IN list: far under every database's limit (SQLite: 32,766).
_IN_CHUNK = 1000


def _chunks(values: Iterable) -> Iterable[list]:
    items = list(values)
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]
