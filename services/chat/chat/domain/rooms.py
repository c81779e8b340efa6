"""Rooms: who may see and enter which room, memberships, DMs and read positions.

Names (rooms and users) are one identity whatever the case: lookups compare lower-cased
names, and a room or user keeps the spelling it was created with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Executable, Row, Table, func, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from ..extensions import db
from ..models import Membership, Room, User
from ..schemas import ROOM_PATTERN, USERNAME_PATTERN
from .accounts import Principal

DEFAULT_ROOM = "general"
# DM rooms are named `dm-<lower id>-<higher id>`; no other room may take a name with this
# prefix (migration 0002 renamed the ones that had it).
DM_PREFIX = "dm-"
# Rooms are never renamed, deleted or made private later, so a worker may remember
# (id, name, private, kind) for the rooms it has seen; the bound keeps a name-spraying client
# from growing it without end.
_ROOM_CACHE_LIMIT = 10_000
# A public room page: a screenful of a room directory.
PUBLIC_PAGE = 50


@dataclass(frozen=True)
class RoomRef:
    id: int
    name: str  # as created (the canonical spelling)
    private: bool
    kind: str = "public"


@dataclass(frozen=True)
class Change:
    """A membership change for the transport to announce.

    `room` is the room object as the acting caller sees it; `added` / `removed` are the
    stored usernames whose membership changed.
    """

    room: dict
    created: bool = False
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


_room_cache: dict[str, RoomRef] = {}
# Names from URL paths are not validated by a schema: one that no room or user could have is
# simply unknown (and never reaches the database, which may refuse its characters).
_ROOM_NAME = re.compile(ROOM_PATTERN)
_USERNAME = re.compile(USERNAME_PATTERN)


def _lookup(name: str) -> RoomRef | None:
    if not _ROOM_NAME.fullmatch(name):
        return None
    key = name.lower()
    ref = _room_cache.get(key)
    if ref is None:
        row = db.session.execute(
            select(Room.id, Room.name, Room.private, Room.kind).where(func.lower(Room.name) == key)
        ).one_or_none()
        if row is None:
            return None
        if len(_room_cache) >= _ROOM_CACHE_LIMIT:
            _room_cache.clear()
        ref = _room_cache[key] = RoomRef(row.id, row.name, row.private, row.kind)
    return ref


def canonical_name(name: str) -> str:
    """The stored spelling of a room's name (the name itself for an unknown room)."""
    ref = _lookup(name)
    return ref.name if ref is not None else name


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
        _check_free_name(name)
        if before_create is not None:
            before_create()
        room, _ = _create(
            principal, name, private=False, members=[], creator_member=False, existing_ok=True
        )
    if room.private and not is_member(principal.id, room):
        raise Forbidden(f"you are not a member of room {name!r}")
    return room


def _check_free_name(name: str) -> None:
    if name.lower().startswith(DM_PREFIX):
        raise Invalid(f"room names starting with {DM_PREFIX!r} are reserved for direct messages")


def _rows_changed(statement: Executable) -> int:
    """Run an UPDATE or DELETE in the session; the number of rows it matched.

    Its result is a CursorResult (which has rowcount); Session.execute is typed as returning
    any Result.
    """
    return cast(CursorResult[Any], db.session.execute(statement)).rowcount


def _users_named(names: set[str]) -> Sequence[Row[int, str]]:
    """(id, username) of the users with these names, compared case-insensitively."""
    wanted = {n.lower() for n in names if _USERNAME.fullmatch(n)}
    if not wanted:
        return []
    return db.session.execute(
        select(User.id, User.username).where(func.lower(User.username).in_(wanted))
    ).all()


def _create(
    principal: Principal,
    name: str,
    *,
    private: bool,
    members: list[str],
    creator_member: bool = True,
    existing_ok: bool = False,
) -> tuple[RoomRef, tuple[str, ...]]:
    """Insert a room; its members (the creator, and a private room's members) start with
    nothing unread. If a concurrent request inserted the same name first: Conflict, or
    (existing_ok: joining a public room creates it) that room."""
    member_rows = [(principal.id, principal.username)] if creator_member or private else []
    if private:
        wanted = {m.lower() for m in members} - {principal.username.lower()}
        found = _users_named(wanted)
        missing = wanted - {r.username.lower() for r in found}
        if missing:
            raise Invalid(f"unknown members: {', '.join(sorted(missing))}")
        member_rows += [(r.id, r.username) for r in found]
    kind = "private" if private else "public"
    room = Room(name=name, private=private, kind=kind, created_by=principal.id, last_seq=0)
    db.session.add(room)
    try:
        db.session.flush()
        db.session.add_all(Membership(room_id=room.id, user_id=uid) for uid, _ in member_rows)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = _lookup(name)
        if existing is not None and existing_ok:
            return existing, ()  # another request created the same public room first: use it
        if existing is None:
            require_user(principal)  # the refusal was created_by's foreign key, not the name
        raise Conflict(f"room {name!r} already exists") from None
    return RoomRef(room.id, name, private, kind), tuple(sorted(n for _, n in member_rows))


def require_user(principal: Principal) -> None:
    """Unauthorized if the principal's user no longer exists.

    A token signed before the database was reset names a user id that is gone; PostgreSQL
    then refuses the write on a foreign key. Called only after such a refusal, so the hot
    path pays nothing for it.
    """
    if db.session.scalar(select(User.id).where(User.id == principal.id)) is None:
        raise Unauthorized("the token's user does not exist; log in again")


def create_room(
    principal: Principal,
    name: str,
    private: bool,
    members: list[str],
    before_create: Callable[[], None] | None = None,
) -> Change:
    """Create a room; Conflict if the name is taken (whatever its case).

    The creator is a member of a private room; `added` lists every member (creator too).
    `before_create` runs once the name is known to be free and may refuse (raise).
    """
    _check_free_name(name)
    if _lookup(name) is not None:
        raise Conflict(f"room {name!r} already exists")
    if before_create is not None:
        before_create()
    room, added = _create(principal, name, private=private, members=members)
    return Change(room=view(principal, room.name), created=True, added=added)


def view(principal: Principal, name: str) -> dict:
    """One room as this user sees it (last_read_seq null and unread 0 when not a member)."""
    room = _lookup(name)
    if room is None:
        raise NotFound(f"room {name!r} does not exist")
    row = db.session.execute(
        select(*_ROOM_COLUMNS, Membership.last_read_seq)
        .outerjoin(
            Membership,
            (Membership.room_id == Room.id) & (Membership.user_id == principal.id),
        )
        .where(Room.id == room.id)
    ).one()
    members = _members_of([room.id]) if room.private else {}
    return _room_dict(row, row.last_read_seq, members.get(room.id))


# What a room object needs: plain columns, not ORM objects (10,000 rooms were ~4x slower).
_ROOM_COLUMNS = (Room.id, Room.name, Room.kind, Room.private, Room.last_seq)


def _room_dict(room: Any, last_read_seq: int | None, members: list[str] | None) -> dict:
    """A room object of the API from a row of _ROOM_COLUMNS (with the caller's position)."""
    item = {
        "name": room.name,
        "kind": room.kind,
        "private": room.private,
        "last_seq": room.last_seq,
        "last_read_seq": last_read_seq,
        "unread": 0 if last_read_seq is None else max(room.last_seq - last_read_seq, 0),
    }
    if room.private:
        item["members"] = members or []
    return item


def _members_of(room_ids: list[int]) -> dict[int, list[str]]:
    """Sorted member names of each room, in one query."""
    members: dict[int, list[str]] = {rid: [] for rid in room_ids}
    if room_ids:
        rows = db.session.execute(
            select(Membership.room_id, User.username)
            .join(User, User.id == Membership.user_id)
            .where(Membership.room_id.in_(room_ids))
            .order_by(func.lower(User.username))
        )
        for room_id, username in rows:
            members[room_id].append(username)
    return members


def describe(principal: Principal, names: list[str] | None = None) -> list[dict]:
    """The caller's rooms (all, or those named): public rooms joined, private rooms and DMs.

    One query for the rooms with their unread counts (last_seq - last_read_seq: seq has no
    gaps), one for the members of the private ones; never one per room.
    """
    query = (
        select(*_ROOM_COLUMNS, Membership.last_read_seq)
        .join(Membership, Membership.room_id == Room.id)
        .where(Membership.user_id == principal.id)
        .order_by(func.lower(Room.name))
    )
    if names is not None:
        query = query.where(func.lower(Room.name).in_([n.lower() for n in names]))
    rows = db.session.execute(query).all()
    members = _members_of([r.id for r in rows if r.private])
    return [_room_dict(r, r.last_read_seq, members.get(r.id)) for r in rows]


def public_rooms(
    principal: Principal, *, limit: int = PUBLIC_PAGE, after: str | None = None
) -> tuple[list[dict], bool]:
    """A page of public rooms by name (case-insensitive order), after the room `after`."""
    query = (
        select(*_ROOM_COLUMNS, Membership.last_read_seq)
        .outerjoin(
            Membership,
            (Membership.room_id == Room.id) & (Membership.user_id == principal.id),
        )
        .where(Room.kind == "public")
        .order_by(func.lower(Room.name))
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(func.lower(Room.name) > after.lower())
    rows = db.session.execute(query).all()
    return [_room_dict(r, r.last_read_seq, None) for r in rows[:limit]], len(rows) > limit


def ensure_member(principal: Principal, room: RoomRef) -> bool:
    """Make the caller a member of a room (public join); True if the membership is new.

    A new member starts read up to the room's newest message: history from before one
    joined is not "unread".
    """
    if is_member(principal.id, room):
        return False
    newest = select(Room.last_seq).where(Room.id == room.id).scalar_subquery()
    try:
        db.session.execute(
            insert(Membership).values(room_id=room.id, user_id=principal.id, last_read_seq=newest)
        )
        db.session.commit()
    except IntegrityError:  # a second socket of the same user joined at the same moment
        db.session.rollback()
        return False
    return True


def open_dm(
    principal: Principal, username: str, before_create: Callable[[], None] | None = None
) -> Change:
    """The caller's DM with `username`, created if there is none (`created` says which).

    `before_create` runs only when the DM is about to be created and may refuse (raise).

    One DM per pair: `dm_key` is unique, so when both sides create it at once (on two
    workers) one INSERT fails and that side returns the other's room. A DM with yourself is
    your own notes room: kind "dm", members [you].
    """
    rows = _users_named({username})
    if not rows:
        raise NotFound(f"user {username!r} does not exist")
    other_id, other_name = rows[0]
    low, high = sorted((principal.id, other_id))
    key = f"{low}:{high}"
    existing = db.session.scalar(select(Room.name).where(Room.dm_key == key))
    if existing is not None:
        return Change(room=view(principal, existing))
    if before_create is not None:
        before_create()
    name = f"{DM_PREFIX}{low}-{high}"
    room = Room(name=name, private=True, kind="dm", dm_key=key, created_by=principal.id)
    room.last_seq = 0
    db.session.add(room)
    try:
        db.session.flush()
        db.session.add_all(
            Membership(room_id=room.id, user_id=uid) for uid in {principal.id, other_id}
        )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = db.session.scalar(select(Room.name).where(Room.dm_key == key))
        if existing is None:  # the name, not the pair, was taken: not expected after 0002
            raise Conflict(f"room {name!r} already exists") from None
        return Change(room=view(principal, existing))
    added = tuple(sorted({principal.username, other_name}))
    return Change(room=view(principal, name), created=True, added=added)


def add_member(principal: Principal, room_name: str, username: str) -> Change:
    """Add a user to a private room the caller belongs to (any member may add).

    Forbidden for a DM (it takes no other members); Invalid for a public room (people join
    those themselves); NotFound for an unknown user. Adding a member twice changes nothing.
    """
    room = room_for(principal, room_name)
    if room.kind == "dm":
        raise Forbidden("a direct message takes no other members")
    if room.kind != "private":
        raise Invalid("public rooms are joined, not added to")
    rows = _users_named({username})
    if not rows:
        raise NotFound(f"user {username!r} does not exist")
    user_id, stored_name = rows[0]
    if is_member(user_id, room):
        return Change(room=view(principal, room.name))
    newest = select(Room.last_seq).where(Room.id == room.id).scalar_subquery()
    try:
        db.session.execute(
            insert(Membership).values(room_id=room.id, user_id=user_id, last_read_seq=newest)
        )
        db.session.commit()
    except IntegrityError:  # added by another member at the same moment
        db.session.rollback()
        return Change(room=view(principal, room.name))
    return Change(room=view(principal, room.name), created=True, added=(stored_name,))


def remove_member(principal: Principal, room_name: str, username: str) -> Change:
    """A member leaves a room for good, or the room's creator removes someone.

    Forbidden for anyone else, and for DMs; NotFound when the user is not a member.
    `room` is the room as the caller sees it afterwards.
    """
    room = _lookup(room_name)
    if room is None:
        raise NotFound(f"room {room_name!r} does not exist")
    if room.kind == "dm":
        raise Forbidden("a direct message's members cannot change")
    is_self = username.lower() == principal.username.lower()
    if not is_self:
        creator = db.session.scalar(select(Room.created_by).where(Room.id == room.id))
        if creator != principal.id or (room.private and not is_member(principal.id, room)):
            raise Forbidden("only the room's creator may remove other members")
    rows = _users_named({username})
    user_id, stored_name = rows[0] if rows else (None, username)
    deleted = 0
    if user_id is not None:
        memberships = cast(Table, Membership.__table__)
        deleted = _rows_changed(
            memberships.delete().where(Membership.room_id == room.id, Membership.user_id == user_id)
        )
        db.session.commit()
    if not deleted:
        raise NotFound(f"{username!r} is not a member of room {room.name!r}")
    return Change(room={"name": room.name}, removed=(stored_name,))


def mark_read(principal: Principal, room_name: str, seq: int) -> tuple[str, int, bool]:
    """Move the caller's read position forward to `seq` (capped at the room's last_seq).

    Never moves back: a lower seq leaves it where it is. Returns (room name, the position
    now, whether it moved). Forbidden when the caller is not a member.
    """
    room = room_for(principal, room_name)
    row = db.session.execute(
        select(Membership.last_read_seq, Room.last_seq)
        .join(Room, Room.id == Membership.room_id)
        .where(Membership.room_id == room.id, Membership.user_id == principal.id)
    ).one_or_none()
    if row is None:
        raise Forbidden(f"join room {room.name!r} first")
    target = min(seq, row.last_seq)
    if target <= row.last_read_seq:
        db.session.rollback()
        return room.name, row.last_read_seq, False
    moved = _rows_changed(
        update(Membership)
        .where(
            Membership.room_id == room.id,
            Membership.user_id == principal.id,
            Membership.last_read_seq < target,
        )
        .values(last_read_seq=target)
    )
    db.session.commit()
    if not moved:  # another request moved it further meanwhile
        now = db.session.scalar(
            select(Membership.last_read_seq).where(
                Membership.room_id == room.id, Membership.user_id == principal.id
            )
        )
        return room.name, now or target, False
    return room.name, target, True


def member_room_names(user_id: int) -> list[str]:
    """The names of every room the user belongs to."""
    return list(
        db.session.scalars(
            select(Room.name)
            .join(Membership, Membership.room_id == Room.id)
            .where(Membership.user_id == user_id)
        )
    )


def read_positions(
    room: RoomRef, limit: int | None = None
) -> tuple[int, list[tuple[str, int]]] | None:
    """The room's last_seq and its members' (username, last_read_seq), in one query.

    None when `limit` is given and the room has more members than that.
    """
    query = (
        select(Room.last_seq, User.username, Membership.last_read_seq)
        .join(Membership, Membership.room_id == Room.id)
        .join(User, User.id == Membership.user_id)
        .where(Room.id == room.id)
    )
    if limit is not None:
        query = query.limit(limit + 1)
    rows = db.session.execute(query).all()
    if limit is not None and len(rows) > limit:
        return None
    last_seq = rows[0].last_seq if rows else 0
    return last_seq, [(r.username, r.last_read_seq) for r in rows]


def lookup(name: str) -> RoomRef | None:
    """The room of this name (any case), or None; no permission check (server use)."""
    return _lookup(name)


def forget_cached_rooms() -> None:
    """Drop the per-worker room cache (tests that recreate the schema need this)."""
    _room_cache.clear()
