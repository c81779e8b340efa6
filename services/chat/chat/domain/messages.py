"""Messages: store with a gapless per-room seq, read history.

The domain stores and returns; the transports publish what it returns
(realtime/delivery.py), so nothing here knows how a message reaches a socket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, Integer, String, Text, bindparam, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from ..config import AUTOCOMMIT_BIND
from ..errors import Conflict, NotFound, Unavailable
from ..extensions import db
from ..green import is_database_timeout
from ..models import Membership, Message, Room, utcnow
from ..schemas import MessagePayload
from .accounts import Principal
from .rooms import RoomRef, ensure_member, require_user, room_for

# A page of history: big enough to fill a screen twice, small enough for one frame.
HISTORY_PAGE = 100
# What a client gets on join without `since`: the screenful it is about to show.
JOIN_LATEST = 50


@dataclass(frozen=True)
class Posted:
    message: MessagePayload
    created: bool  # False when a retry found the message stored by an earlier attempt
    room: RoomRef  # the room it was stored in (the caller's notices need it)


def post_message(principal: Principal, room_name: str, text: str, client_id: str | None) -> Posted:
    """Store a message; the caller publishes a created one (realtime/delivery.py).

    seq comes from `UPDATE rooms SET last_seq = last_seq + 1 ... RETURNING` in the same
    transaction as the INSERT, so the row lock orders writers: commit order is seq order and
    a reader of "everything after N" can never miss a message that commits late.
    A retry with the same (user, client_id) returns the stored message with created=False:
    the first attempt's caller published it, so it is not published again.
    Errors: NotFound/Forbidden (room_for), Conflict (client_id used in another room),
    Unavailable (the store timed out or is down).
    """
    room = room_for(principal, room_name)
    try:
        autocommit = db.engines.get(AUTOCOMMIT_BIND)  # configured for PostgreSQL only
        if autocommit is not None:
            payload = _store_in_one_statement(autocommit, principal, room, text, client_id)
        else:
            payload = _store_in_transaction(principal, room, text, client_id)
    except IntegrityError:
        db.session.rollback()
        require_user(principal)  # a token naming a user that is gone: a foreign key refused it
        if client_id is None:
            raise
        return Posted(_stored_retry(principal, room, client_id), created=False, room=room)
    except OperationalError as exc:
        db.session.rollback()
        if is_database_timeout(exc):
            # The statement may have reached the server and will run when it wakes up.
            raise Unavailable(
                "the message store did not answer in time; the message may have been stored: "
                "retry with the same client_id"
            ) from None
        raise Unavailable("the message store is unavailable; the message was not sent") from None
    return Posted(payload, created=True, room=room)


# seq: the room's counter, incremented and read in the statement that stores the message.
_NEXT_SEQ = (
    update(Room)
    .where(Room.id == bindparam("new_room_id", type_=Integer))
    .values(last_seq=Room.last_seq + 1)
    .returning(Room.last_seq)
)
# Built once, so the hot path only binds values: building the statement for each message
# (and its cache key) took post_message from ~0.2 to ~0.6 ms of CPU on PostgreSQL.
_next_seq = _NEXT_SEQ.returning(Room.id).cte("next_seq")
# Sending a message moves the sender's own read position to it (in the same statement).
_mark_sender_read = (
    update(Membership)
    .where(
        Membership.room_id == _next_seq.c.id,
        Membership.user_id == bindparam("new_user_id", type_=Integer),
        Membership.last_read_seq < _next_seq.c.last_seq,
    )
    .values(last_read_seq=_next_seq.c.last_seq)
    .cte("mark_sender_read")
)
_STORE_IN_ONE_STATEMENT = (
    insert(Message)
    .from_select(
        ["room_id", "seq", "user_id", "username", "text", "client_id", "created_at"],
        select(
            _next_seq.c.id,
            _next_seq.c.last_seq,
            bindparam("new_user_id", type_=Integer),
            bindparam("new_username", type_=String),
            bindparam("new_text", type_=Text),
            bindparam("new_client_id", type_=String),
            bindparam("new_created_at", type_=DateTime(timezone=True)),
        ),
    )
    .returning(Message.id, Message.seq)
    .add_cte(_mark_sender_read)
)
_MARK_SENDER_READ = (
    update(Membership)
    .where(
        Membership.room_id == bindparam("new_room_id", type_=Integer),
        Membership.user_id == bindparam("new_user_id", type_=Integer),
        Membership.last_read_seq < bindparam("new_seq", type_=Integer),
    )
    .values(last_read_seq=bindparam("new_seq", type_=Integer))
)


def _store_in_one_statement(
    engine: Engine, principal: Principal, room: RoomRef, text: str, client_id: str | None
) -> MessagePayload:
    """PostgreSQL: seq and row in one autocommitted statement, one round trip.

    The message handler's time before the broadcast is round trips, each of which also waits
    for the busy hub to come back to it; BEGIN, UPDATE, INSERT and COMMIT were four of them.
    One statement is still one transaction: the UPDATE's row lock orders writers until it
    commits, and a unique violation undoes the seq increment with the insert.
    """
    message = _new_message(principal, room, text, client_id, created_at=utcnow())
    # Not named after the messages columns: SQLAlchemy would take such keys as the INSERT's
    # column values.
    values = {
        "new_room_id": room.id,
        "new_user_id": principal.id,
        "new_username": principal.username,
        "new_text": text,
        "new_client_id": client_id,
        "new_created_at": message.created_at,
    }
    with engine.connect() as connection:
        row = connection.execute(_STORE_IN_ONE_STATEMENT, values).one_or_none()
    if row is None:  # no such room row: the cached RoomRef outlived it
        raise NotFound(f"room {room.name!r} does not exist")
    message.id, message.seq = row.id, row.seq
    return message.to_dict(room.name)


def _store_in_transaction(
    principal: Principal, room: RoomRef, text: str, client_id: str | None
) -> MessagePayload:
    """SQLite (the embedded default): UPDATE ... RETURNING, then INSERT, in one transaction."""
    seq = db.session.execute(_NEXT_SEQ, {"new_room_id": room.id}).scalar_one()
    message = _new_message(principal, room, text, client_id, seq=seq)
    db.session.add(message)
    db.session.flush()  # assigns the id (INSERT ... RETURNING): the payload is complete
    db.session.execute(
        _MARK_SENDER_READ,
        {"new_room_id": room.id, "new_user_id": principal.id, "new_seq": seq},
    )
    # Read before the commit, which expires every attribute: after it, to_dict would
    # reload the row with one more round trip.
    payload = message.to_dict(room.name)
    db.session.commit()
    return payload


def _new_message(
    principal: Principal, room: RoomRef, text: str, client_id: str | None, **stored: Any
) -> Message:
    return Message(
        room_id=room.id,
        user_id=principal.id,
        username=principal.username,
        text=text,
        client_id=client_id,
        **stored,
    )


def _stored_retry(principal: Principal, room: RoomRef, client_id: str) -> MessagePayload:
    stored = db.session.scalar(
        select(Message).where(Message.user_id == principal.id, Message.client_id == client_id)
    )
    if stored is None:  # the conflict was not ours after all; let the caller see a clean error
        raise Unavailable("the message could not be stored; try again")
    if stored.room_id != room.id:
        raise Conflict("client_id was already used for a message in another room")
    return stored.to_dict(room.name)


def history(
    principal: Principal,
    room_name: str,
    *,
    after: int | None = None,
    before: int | None = None,
    limit: int = JOIN_LATEST,
) -> tuple[list[MessagePayload], bool]:
    """Messages of a room in ascending seq, and whether more lie beyond the page.

    With `after`, the page starts just after it (catch-up); otherwise it ends just before
    `before`, or at the newest message (scroll-back).
    """
    room = room_for(principal, room_name)
    return _page(room, after=after, before=before, limit=limit)


def _page(
    room: RoomRef, *, after: int | None, before: int | None, limit: int
) -> tuple[list[MessagePayload], bool]:
    query = select(Message).where(Message.room_id == room.id)
    if before is not None:
        query = query.where(Message.seq < before)
    if after is not None:
        query = query.where(Message.seq > after).order_by(Message.seq.asc())
    else:
        query = query.order_by(Message.seq.desc())
    rows = list(db.session.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    if after is None:
        rows.reverse()
    return [m.to_dict(room.name) for m in rows], more


def newest_in_rooms(room_names: list[str]) -> dict[str, MessagePayload]:
    """The newest message of each named room that has one (no permission check: server use)."""
    rows = db.session.execute(
        select(Message, Room.name)
        .join(Room, Room.id == Message.room_id)
        .where(Room.name.in_(room_names), Message.seq == Room.last_seq)
    ).all()
    return {name: message.to_dict(name) for message, name in rows}


def join(
    principal: Principal,
    room_name: str,
    since: int | None,
    enter: Callable[[RoomRef], None],
    before_create: Callable[[], None] | None = None,
) -> tuple[RoomRef, list[MessagePayload], bool, bool]:
    """Enter a room (creating a public one on first use) and read what the joiner missed.

    Joining a public room makes the caller its member; the last value says whether that
    membership is new (the transport announces it to the user's other sockets).

    `enter` subscribes the caller to the room's live events. It runs before history is read,
    so a message committed in between arrives live, in history, or both (the client drops
    the duplicate by seq), but never in neither. `before_create` runs before a room is
    created and may refuse (a limit on new rooms).
    """
    room = room_for(principal, room_name, create_public=True, before_create=before_create)
    became_member = not room.private and ensure_member(principal, room)
    # `enter` waits on Redis (the room's subscription, presence): the pooled connection goes
    # back first. Held across those waits, a burst of joins on a busy worker took every
    # connection of the pool, and joins were refused `unavailable` after its 3 s timeout.
    db.session.commit()
    enter(room)
    if since is None:
        messages, more = _page(room, after=None, before=None, limit=JOIN_LATEST)
    else:
        messages, more = _page(room, after=since, before=None, limit=HISTORY_PAGE)
    db.session.commit()  # the caller's announcements of a new member wait on Redis too
    return room, messages, more, became_member
