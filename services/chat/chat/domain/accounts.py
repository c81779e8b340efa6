"""Accounts: registration, password checks, signed bearer tokens and ending sessions.

A token is signed (itsdangerous) and names the user, a random token id (`jti`) and the
instant it was issued (`iat`, ms). It is valid while its signature holds, it is younger than
TOKEN_TTL_SECONDS, it was issued after the user's `tokens_valid_after` ("log out everywhere",
a password change) and its id is not revoked ("log out" on one device).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
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


def ended_sessions(principals: Mapping[str, Principal], max_age: int) -> list[str]:
    """Of these connections (sid -> principal), those whose token expired or was ended.

    Two queries however many connections (in chunks for very many): the users' valid-after
    instants and which of the token ids are revoked.
    """
    if not principals:
        return []
    now = _now_ms()
    uids = {p.id for p in principals.values()}
    jtis = {p.jti for p in principals.values() if p.jti}
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
    return [
        sid
        for sid, p in principals.items()
        if p.id not in valid_after
        or p.issued_ms <= valid_after[p.id]
        or (p.jti is not None and p.jti in revoked)
        or now - p.issued_ms > max_age * 1000
    ]


# Bound parameters per IN list: far under every database's limit (SQLite: 32,766).
_IN_CHUNK = 1000


def _chunks(values: Iterable) -> Iterable[list]:
    items = list(values)
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]
