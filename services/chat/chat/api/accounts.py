"""Users, tokens (log in, log out) and passwords."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from flask import current_app, request

from ..cluster import rate_limit
from ..domain import accounts
from ..domain.accounts import Principal
from ..errors import ChatError
from ..schemas import Credentials, PasswordChange, TokenOut, UserList, UserOut, UserSearchQuery
from . import bp
from .openapi import endpoint

log = logging.getLogger(__name__)


def _limiter() -> rate_limit.RateLimiter:
    return current_app.extensions["chat.rate_limiter"]


def _client_address() -> str:
    """The client's address: the peer's, or the proxies' X-Forwarded-For (TRUSTED_PROXY_HOPS)."""
    return request.remote_addr or "unknown"


@endpoint(
    bp,
    "POST",
    "/users",
    summary="Register a user",
    body=Credentials,
    response=UserOut,
    status=201,
    auth=False,
    errors=(409, 429),
)
def create_user(creds: Credentials) -> dict:
    address = _client_address()
    try:
        _limiter().check(address, rate_limit.REGISTRATIONS)
    except ChatError:
        log.warning("registration refused: too many from %s", address)
        raise
    user = accounts.register(creds.username, creds.password)
    return {"id": user.id, "username": user.username}


@endpoint(
    bp,
    "POST",
    "/tokens",
    summary="Log in: exchange credentials for a bearer token",
    body=Credentials,
    response=TokenOut,
    auth=False,
    errors=(429,),
)
def create_token(creds: Credentials) -> dict:
    user = _verify_password(
        creds.username, lambda: accounts.authenticate(creds.username, creds.password)
    )
    token = accounts.issue_token(user, current_app.config["SECRET_KEY"])
    return {"token": token, "user": {"id": user.id, "username": user.username}}


@endpoint(
    bp,
    "GET",
    "/users",
    summary="Find people: usernames starting with q (any case), at most 20",
    query=UserSearchQuery,
    response=UserList,
)
def search_users(principal: Principal, query: UserSearchQuery) -> dict:
    return {"users": accounts.search_users(query.q)}


T = TypeVar("T")


def _verify_password(username: str, attempt: Callable[[], T]) -> T:
    """Run a password check under the failed-login limits; one log line per failure.

    While the username or the client address has used up its failures, the check is not
    even tried (429 with Retry-After), so a guesser learns nothing more, even from a right
    guess. Only failures count: a person who types the password right is never slowed.
    """
    limiter, address = _limiter(), _client_address()
    keys = (
        (rate_limit.LOGIN_FAILURES, username.lower()),
        (rate_limit.LOGIN_FAILURES_PER_ADDRESS, address),
    )
    try:
        for rule, key in keys:
            limiter.refuse_if_exhausted(rule, key)
    except ChatError:
        log.warning("login refused: too many failures for %r or from %s", username, address)
        raise
    try:
        return attempt()
    except ChatError as exc:
        if exc.status not in (401, 403):
            raise
        for rule, key in keys:
            limiter.hit(rule, key)
        log.warning("login failed: wrong password for %r from %s", username, address)
        raise


@endpoint(
    bp,
    "DELETE",
    "/tokens/current",
    summary="Log out: end the session of the token in this request",
    status=204,
)
def delete_current_token(principal: Principal) -> None:
    accounts.end_session(principal, current_app.config["TOKEN_TTL_SECONDS"])


@endpoint(
    bp,
    "DELETE",
    "/tokens",
    summary="Log out everywhere: end every session of the caller",
    status=204,
)
def delete_all_tokens(principal: Principal) -> None:
    accounts.end_all_sessions(principal)


@endpoint(
    bp,
    "PUT",
    "/users/me/password",
    summary="Change the password; every session of the caller ends (log in again)",
    body=PasswordChange,
    status=204,
    errors=(403, 429),
)
def change_password(principal: Principal, change: PasswordChange) -> None:
    _verify_password(
        principal.username,
        lambda: accounts.change_password(principal, change.current_password, change.new_password),
    )
