"""Users and tokens."""

from __future__ import annotations

from flask import current_app

from ..domain import accounts
from ..domain.accounts import Principal
from ..schemas import Credentials, TokenOut, UserList, UserOut, UserSearchQuery
from . import bp
from .openapi import endpoint


@endpoint(
    bp,
    "POST",
    "/users",
    summary="Register a user",
    body=Credentials,
    response=UserOut,
    status=201,
    auth=False,
    errors=(409,),
)
def create_user(creds: Credentials) -> dict:
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
)
def create_token(creds: Credentials) -> dict:
    user = accounts.authenticate(creds.username, creds.password)
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
