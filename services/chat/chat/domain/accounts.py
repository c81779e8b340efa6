"""Accounts: registration, password checks, signed bearer tokens."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, Unauthorized
from ..extensions import db
from ..green import run_native
from ..models import User

# argon2id at RFC 9106's second recommended setting scaled to OWASP's floor (19 MiB, t=2):
# ~20 ms per hash here, run on a native thread so it never stalls the hub.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# A hash to verify against when the user does not exist, so timing does not reveal names.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
_TOKEN_SALT = "chat.token.v1"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    id: int
    username: str


def register(username: str, password: str) -> User:
    """Create a user; Conflict if the name is taken (names compare case-insensitively)."""
    if db.session.scalar(select(User.id).where(db.func.lower(User.username) == username.lower())):
        raise Conflict(f"username {username!r} is taken")
    user = User(username=username, password_hash=run_native(_hasher.hash, password))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"username {username!r} is taken") from None
    return user


def authenticate(username: str, password: str) -> User:
    """The user with these credentials (the name in any case); Unauthorized otherwise."""
    user = db.session.scalar(select(User).where(db.func.lower(User.username) == username.lower()))
    try:
        run_native(_hasher.verify, user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        raise Unauthorized("wrong username or password") from None
    if user is None:
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


def issue_token(user: User | Principal, secret_key: str) -> str:
    return URLSafeTimedSerializer(secret_key, salt=_TOKEN_SALT).dumps(
        {"uid": user.id, "name": user.username}
    )


def verify_token(token: str | None, secret_key: str, max_age: int) -> Principal:
    """The principal a token names; Unauthorized if missing, forged or expired."""
    if not token:
        raise Unauthorized("missing token")
    try:
        data = URLSafeTimedSerializer(secret_key, salt=_TOKEN_SALT).loads(token, max_age=max_age)
    except SignatureExpired:
        raise Unauthorized("token expired") from None
    except BadSignature:
        raise Unauthorized("invalid token") from None
    if not isinstance(data, dict) or not isinstance(data.get("uid"), int):
        raise Unauthorized("invalid token")
    return Principal(id=data["uid"], username=str(data.get("name", "")))
