"""Rooms and their messages, memberships, direct messages, read positions."""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app

from ..cluster import rate_limit
from ..domain import messages, rooms
from ..domain.accounts import Principal
from ..realtime import delivery, notify
from ..schemas import (
    DmCreate,
    HistoryQuery,
    MemberAdd,
    MemberPath,
    MessageList,
    MessageOut,
    MessagePayload,
    MessageText,
    ReadOut,
    ReadPosition,
    RoomCreate,
    RoomList,
    RoomOut,
    RoomPath,
    RoomsQuery,
)
from . import bp
from .openapi import endpoint


@endpoint(
    bp,
    "GET",
    "/rooms",
    summary="The caller's rooms with unread counts; scope=public pages through public rooms",
    query=RoomsQuery,
    response=RoomList,
)
def list_rooms(principal: Principal, query: RoomsQuery) -> dict:
    if query.scope == "public":
        page, more = rooms.public_rooms(principal, limit=query.limit, after=query.after)
        return {"rooms": page, "more": more}
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
    change = rooms.create_room(
        principal,
        payload.name,
        payload.private,
        payload.members,
        before_create=_room_creation_limit(principal),
    )
    notify.added(change)
    return change.room


def _room_creation_limit(principal: Principal) -> Callable[[], None]:
    """Counts one new room (or DM) against the caller's limit; `rate_limited` past it."""
    limiter = current_app.extensions["chat.rate_limiter"]
    return lambda: limiter.check(principal.username, rate_limit.ROOM_CREATIONS)


def _created_or_found(change: rooms.Change) -> tuple[dict, int]:
    """201 and the `room` event to everyone added when the change created something; else 200."""
    if change.created:
        notify.added(change)
        return change.room, 201
    return change.room, 200


@endpoint(
    bp,
    "POST",
    "/dms",
    summary="Open the direct message with a user: 201 created, 200 when it exists",
    body=DmCreate,
    response=RoomOut,
    status=201,
    also=(200,),
    errors=(404, 429),
)
def open_dm(principal: Principal, payload: DmCreate) -> tuple[dict, int]:
    return _created_or_found(
        rooms.open_dm(principal, payload.user, before_create=_room_creation_limit(principal))
    )


@endpoint(
    bp,
    "POST",
    "/rooms/<room>/members",
    summary="Add a member to a private room (any member may): 201 added, 200 already one",
    body=MemberAdd,
    response=RoomOut,
    status=201,
    path_params=RoomPath,
    also=(200,),
    errors=(403, 404),
)
def add_member(principal: Principal, payload: MemberAdd, room: str) -> tuple[dict, int]:
    return _created_or_found(rooms.add_member(principal, room, payload.user))


@endpoint(
    bp,
    "DELETE",
    "/rooms/<room>/members/<username>",
    summary="Leave a room for good, or (its creator) remove a member",
    path_params=MemberPath,
    status=204,
    errors=(403, 404),
)
def remove_member(principal: Principal, room: str, username: str) -> str:
    notify.removed(rooms.remove_member(principal, room, username))
    return ""


@endpoint(
    bp,
    "POST",
    "/rooms/<room>/read",
    summary="Move the caller's read position forward (never back)",
    body=ReadPosition,
    response=ReadOut,
    path_params=RoomPath,
    errors=(403, 404, 429),
)
def mark_read(principal: Principal, payload: ReadPosition, room: str) -> dict:
    current_app.extensions["chat.rate_limiter"].check(principal.username, rate_limit.READS)
    name, last_read_seq, moved = rooms.mark_read(principal, room, payload.seq)
    if moved:
        notify.read(principal.username, name, last_read_seq, skip_sid=None)
    return {"room": name, "last_read_seq": last_read_seq}


@endpoint(
    bp,
    "GET",
    "/rooms/<room>/messages",
    summary="Read a room's history, ascending seq",
    query=HistoryQuery,
    path_params=RoomPath,
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
    path_params=RoomPath,
    response=MessageOut,
    status=201,
    errors=(403, 404, 429, 503),
)
def post_message(principal: Principal, payload: MessageText, room: str) -> MessagePayload:
    current_app.extensions["chat.rate_limiter"].check(principal.username)
    posted = messages.post_message(principal, room, payload.text, payload.client_id)
    delivery.message_posted(posted)
    return posted.message
