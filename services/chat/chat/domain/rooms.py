"""Rooms: who may see and enter which room."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..extensions import db
from ..models import Membership, Room, User
from .accounts import Principal

DEFAULT_ROOM = "general"
# Rooms are never renamed, deleted or made private later, so a worker may remember
# (id, private) for the rooms it has seen; the bound keeps a name-spraying client from
# growing it without end.
_ROOM_CACHE_LIMIT = 10_000


@dataclass(frozen=True)
class RoomRef:
    id: int
    name: str
    private: bool


_room_cache: dict[str, RoomRef] = {}


def _lookup(name: str) -> RoomRef | None:
    ref = _room_cache.get(name)
    if ref is None:
        row = db.session.execute(
            select(Room.id, Room.private).where(Room.name == name)
        ).one_or_none()
        if row is None:
            return None
        if len(_room_cache) >= _ROOM_CACHE_LIMIT:
            _room_cache.clear()
        ref = _room_cache[name] = RoomRef(row.id, name, row.private)
    return ref


def is_member(user_id: int, room: RoomRef) -> bool:
    return (
        db.session.scalar(
            select(Membership.user_id).where(
                Membership.room_id == room.id, Membership.user_id == user_id
            )
        )
        is not None
    )


def room_for(
    principal: Principal,
    name: str,
    *,
    create_public: bool = False,
    before_create: Callable[[], None] | None = None,
) -> RoomRef:
    """The room a caller may use; NotFound or Forbidden otherwise.

    A private room a caller does not belong to is Forbidden, as the API contract says.
    `before_create` runs before a public room is created and may refuse (raise).
    """
    room = _lookup(name)
    if room is None:
        if not create_public:
            raise NotFound(f"room {name!r} does not exist")
        if before_create is not None:
            before_create()
        room = _create(principal, name, private=False, members=[])
    if room.private and not is_member(principal.id, room):
        raise Forbidden(f"you are not a member of room {name!r}")
    return room


def _create(principal: Principal, name: str, *, private: bool, members: list[str]) -> RoomRef:
    member_ids: set[int] = set()
    if private:
        wanted = {m.lower() for m in members} - {principal.username.lower()}
        rows = db.session.execute(
            select(User.id, User.username).where(db.func.lower(User.username).in_(wanted))
        ).all()
        missing = wanted - {r.username.lower() for r in rows}
        if missing:
            raise Invalid(f"unknown members: {', '.join(sorted(missing))}")
        member_ids = {r.id for r in rows} | {principal.id}
    room = Room(name=name, private=private, created_by=principal.id, last_seq=0)
    db.session.add(room)
    try:
        db.session.flush()
        db.session.add_all(Membership(room_id=room.id, user_id=uid) for uid in member_ids)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = _lookup(name)
        if existing is not None and not private:
            return existing  # another request created the same public room first: use it
        raise Conflict(f"room {name!r} already exists") from None
    return RoomRef(room.id, name, private)


def create_room(
    principal: Principal,
    name: str,
    private: bool,
    members: list[str],
    before_create: Callable[[], None] | None = None,
) -> dict:
    """Create a room; Conflict if the name is taken. The creator is a member of a private room.

    `before_create` runs once the name is known to be free and may refuse (raise).
    """
    if _lookup(name) is not None:
        raise Conflict(f"room {name!r} already exists")
    if before_create is not None:
        before_create()
    room = _create(principal, name, private=private, members=members)
    return describe(principal, [room.name])[0]


def describe(principal: Principal, names: list[str] | None = None) -> list[dict]:
    """Public rooms and the caller's private rooms (all, or those named), members listed."""
    mine = select(Membership.room_id).where(Membership.user_id == principal.id)
    query = select(Room).where((Room.private.is_(False)) | Room.id.in_(mine)).order_by(Room.name)
    if names is not None:
        query = query.where(Room.name.in_(names))
    rooms = db.session.scalars(query).all()
    private_ids = [r.id for r in rooms if r.private]
    members: dict[int, list[str]] = {rid: [] for rid in private_ids}
    if private_ids:
        rows = db.session.execute(
            select(Membership.room_id, User.username)
            .join(User, User.id == Membership.user_id)
            .where(Membership.room_id.in_(private_ids))
            .order_by(User.username)
        )
        for room_id, username in rows:
            members[room_id].append(username)
    out = []
    for r in rooms:
        item = {"name": r.name, "private": r.private, "last_seq": r.last_seq}
        if r.private:
            item["members"] = members[r.id]
        out.append(item)
    return out


def forget_cached_rooms() -> None:
    """Drop the per-worker room cache (tests that recreate the schema need this)."""
    _room_cache.clear()
