"""Rooms and their messages."""

from __future__ import annotations

from flask import current_app

from ..cluster import rate_limit
from ..domain import messages, rooms
from ..domain.accounts import Principal
from ..metrics import messages_stored
from ..schemas import (
    HistoryQuery,
    MessageList,
    MessageOut,
    MessageText,
    RoomCreate,
    RoomList,
    RoomOut,
)
from . import bp
from .openapi import endpoint


@endpoint(
    bp, "GET", "/rooms", summary="Public rooms and the caller's private rooms", response=RoomList
)
def list_rooms(principal: Principal) -> dict:
    return {"rooms": rooms.describe(principal)}


@endpoint(
    bp,
    "POST",
    "/rooms",
    summary="Create a room",
    body=RoomCreate,
    response=RoomOut,
    status=201,
    errors=(409, 429),
)
def create_room(principal: Principal, payload: RoomCreate) -> dict:
    limiter = current_app.extensions["chat.rate_limiter"]
    return rooms.create_room(
        principal,
        payload.name,
        payload.private,
        payload.members,
        before_create=lambda: limiter.check(principal.username, rate_limit.ROOM_CREATIONS),
    )


@endpoint(
    bp,
    "GET",
    "/rooms/<room>/messages",
    summary="Read a room's history, ascending seq",
    query=HistoryQuery,
    response=MessageList,
    errors=(403, 404),
)
def list_messages(principal: Principal, query: HistoryQuery, room: str) -> dict:
    page, more = messages.history(
        principal, room, after=query.after, before=query.before, limit=query.limit
    )
    return {"messages": page, "more": more}


@endpoint(
    bp,
    "POST",
    "/rooms/<room>/messages",
    summary="Post a message (pushed to the room)",
    body=MessageText,
    response=MessageOut,
    status=201,
    errors=(403, 404, 429, 503),
)
def post_message(principal: Principal, payload: MessageText, room: str) -> dict:
    current_app.extensions["chat.rate_limiter"].check(principal.username)
    posted = messages.post_message(principal, room, payload.text, payload.client_id)
    if posted.created:
        messages_stored.inc()
    return posted.message
