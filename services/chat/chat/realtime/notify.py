"""What the server pushes to a user rather than to a room: the per-user channel.

Every socket is in its user's channel `user:<name>` (all of the user's sockets, on every
worker) and, for each room the user belongs to but this socket has not joined live, in that
room's notify channel `notify:<room>:<name>`. Both are ordinary Socket.IO rooms, so the
message queue carries them like any other room.

- `room` (the room object as that user sees it) to `user:<name>` when the user is added to a
  room, and to `notify:<room>:<name>` when the room gets a new message: only the user's
  sockets that do not receive the room live get it.
- `room_removed {room}` to `user:<name>` after the user's sockets left the room.
- `read {room, last_read_seq}` to `user:<name>` but the socket that read.

Cost bound: a room of at most EXACT_ACTIVITY_MEMBERS members gets one `room` per member per
message, at once (DMs and small groups: the push the product exists for). A bigger room's
activity is coalesced: the worker that stored a message marks the room, and at most once
every ACTIVITY_FLUSH_SECONDS it reads all read positions in one query and emits one `room`
per member who has a socket somewhere that has not joined the room (presence: two Redis
round trips), so a 1,000-member room costs at most one emit per such member per second, and
none for members who are offline or watching the room live. A room a worker has found big is
not read again per message: the flush's own read renews that verdict, and it lapses after
KNOWN_BIG_SECONDS without one, so a room that shrank below the bound is exact again after at
most one flush (a profile of a 1,000-member room at 20 msg/s: the per-message read took four
times the CPU of storing the message).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, current_app

from ..domain import rooms
from ..domain.rooms import Change, RoomRef
from ..extensions import db, socketio, socketio_server
from .publish import channel as room_channel

log = logging.getLogger(__name__)

NAMESPACE = "/"
# DMs (2), notes (1) and small private groups: exact and immediate. Above, one emit per
# member per message would be the cost the contract forbids, so activity is coalesced.
EXACT_ACTIVITY_MEMBERS = 16
# Above this many members a room sends no `room` notices at all: the flush would read every
# member's position each second (the lobby `general` holds every user). Its members see its
# unread count in GET /api/rooms and get its messages once they join it. A worker that found
# a room this big does not read it again for KNOWN_BIG_SECONDS.
ACTIVITY_MAX_MEMBERS = 5_000
# A big room's members hear of new activity at most this often (per worker that stores
# messages in it): the unread badge of a room one is not looking at may lag a second.
ACTIVITY_FLUSH_SECONDS = 1.0
# How long a worker takes a room it found to have more than EXACT_ACTIVITY_MEMBERS members for
# a big one without reading it again (each flush of the room renews it).
KNOWN_BIG_SECONDS = 10.0


def user_channel(username: str) -> str:
    """The Socket.IO room of all of a user's sockets."""
    return f"user:{username.lower()}"


def notify_channel(room_name: str, username: str) -> str:
    """The Socket.IO room of a user's sockets that are members of a room but not joined."""
    return f"notify:{room_name.lower()}:{username.lower()}"


def _sids_of(username: str) -> list[str]:
    return current_app.extensions["chat.presence"].sids_of(username)


def _for_member(room: dict) -> dict:
    """A room object as a member who has just been added sees it: nothing unread."""
    return {**room, "last_read_seq": room["last_seq"], "unread": 0}


def added(change: Change, *, skip_sids: tuple[str, ...] = ()) -> None:
    """The users in `change.added` now belong to `change.room`: tell all their sockets.

    Their sockets (on any worker; python-socketio's pub/sub manager forwards enter_room for
    a sid of another worker) start receiving the room's activity unless joined live:
    `skip_sids` are sockets that have just joined it.
    """
    server = socketio_server()
    name = change.room["name"]
    for username in change.added:
        channel = notify_channel(name, username)
        for sid in _sids_of(username):
            if sid not in skip_sids:
                server.enter_room(sid, channel, namespace=NAMESPACE)
        socketio.emit("room", _for_member(change.room), to=user_channel(username))


def removed(change: Change) -> None:
    """The users in `change.removed` left the room: their sockets stop receiving it at once.

    leave_room for a sid of another worker travels the message queue before the
    `room_removed` emit does, on the same channel, so no message of the room reaches them
    after `room_removed`.
    """
    server = socketio_server()
    name = change.room["name"]
    presence = current_app.extensions["chat.presence"]
    for username in change.removed:
        for sid in _sids_of(username):
            server.leave_room(sid, room_channel(name), namespace=NAMESPACE)
            server.leave_room(sid, notify_channel(name, username), namespace=NAMESPACE)
            presence.leave(sid, name)  # this worker's own sockets; others expire with the TTL
        socketio.emit("room_removed", {"room": name}, to=user_channel(username))


def read(username: str, room_name: str, last_read_seq: int, skip_sid: str | None) -> None:
    """The user's read position moved: every other socket of theirs hears it."""
    socketio.emit(
        "read",
        {"room": room_name, "last_read_seq": last_read_seq},
        to=user_channel(username),
        skip_sid=skip_sid,
    )


def activity(room: RoomRef) -> None:
    """A message was stored in `room`: its members' sockets not joined to it hear of it.

    Never raises: the message is stored and acked whatever happens to this notice.
    """
    try:
        coalescer = _coalescer()
        if coalescer.known_huge(room):
            return  # above ACTIVITY_MAX_MEMBERS: no notices at all
        if coalescer.known_big(room):
            coalescer.mark(room)
            return
        positions = rooms.read_positions(room, EXACT_ACTIVITY_MEMBERS)
        if positions is None:
            coalescer.found_big(room)
            coalescer.mark(room)
            return
        _emit_activity(room, *positions)
    except Exception as exc:
        log.warning("room activity for %s not sent: %s", room.name, exc)


def _emit_activity(
    room: RoomRef,
    last_seq: int,
    positions: list[tuple[str, int]],
    only: set[str] | None = None,
) -> None:
    """One `room` per member (of those in `only`, when given) to their notify channel."""
    base: dict[str, Any] = {
        "name": room.name,
        "kind": room.kind,
        "private": room.private,
        "last_seq": last_seq,
    }
    if room.private:
        base["members"] = sorted((u for u, _ in positions), key=str.lower)
    for username, last_read_seq in positions:
        if only is not None and username not in only:
            continue
        event = {**base, "last_read_seq": last_read_seq}
        event["unread"] = max(last_seq - last_read_seq, 0)
        socketio.emit("room", event, to=notify_channel(room.name, username))


class ActivityCoalescer:
    """Big rooms' activity: at most one flush per room per ACTIVITY_FLUSH_SECONDS."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.presence = app.extensions["chat.presence"]
        self.dirty: dict[int, RoomRef] = {}
        self.running = False
        # Room id -> monotonic time until which the room counts as big without a read; and
        # the same for rooms above ACTIVITY_MAX_MEMBERS (the lobby), which get no flush at all.
        self.big_until: dict[int, float] = {}
        self.huge_until: dict[int, float] = {}

    def known_huge(self, room: RoomRef) -> bool:
        """Whether this worker found the room above ACTIVITY_MAX_MEMBERS lately."""
        return self.huge_until.get(room.id, 0.0) > time.monotonic()

    def known_big(self, room: RoomRef) -> bool:
        """Whether this worker found the room big less than KNOWN_BIG_SECONDS ago."""
        return self.big_until.get(room.id, 0.0) > time.monotonic()

    def found_big(self, room: RoomRef) -> None:
        """The room has more than EXACT_ACTIVITY_MEMBERS members (as just read)."""
        self.big_until[room.id] = time.monotonic() + KNOWN_BIG_SECONDS

    def mark(self, room: RoomRef) -> None:
        self.dirty[room.id] = room
        if not self.running:
            self.running = True
            socketio.start_background_task(self._loop)

    def _loop(self) -> None:
        try:
            while self.dirty:
                socketio.sleep(ACTIVITY_FLUSH_SECONDS)  # type: ignore[arg-type]  # stub: int; takes float
                dirty, self.dirty = self.dirty, {}
                with self.app.app_context():
                    for room in dirty.values():
                        try:
                            self._flush(room)
                        except Exception:  # one room's failure must not stop the others' flushes
                            db.session.rollback()
                            log.exception("room activity flush failed for %s", room.name)
                now = time.monotonic()
                for verdicts in (self.big_until, self.huge_until):
                    for room_id, until in list(verdicts.items()):
                        if until <= now:
                            verdicts.pop(room_id, None)
        finally:
            self.running = False  # a later mark starts a new loop, whatever ended this one

    def _flush(self, room: RoomRef) -> None:
        read = rooms.read_positions(room, ACTIVITY_MAX_MEMBERS)
        db.session.commit()  # what follows waits on Redis
        if read is not None and len(read[1]) <= EXACT_ACTIVITY_MEMBERS:
            self.big_until.pop(room.id, None)  # it shrank: its next message is read at once
        else:
            self.found_big(room)
        if read is None:
            self.huge_until[room.id] = time.monotonic() + KNOWN_BIG_SECONDS
            return
        last_seq, positions = read
        # Only members with a socket, somewhere, that has not joined the room: most of a big
        # room's members are offline or watching it.
        outside = self.presence.outside(room.name, [u for u, _ in positions])
        _emit_activity(room, last_seq, positions, only=outside)


def _coalescer() -> ActivityCoalescer:
    ext = current_app.extensions
    if "chat.activity" not in ext:
        # The app itself, not the context-local proxy (typed as Flask, which has no such method).
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        ext["chat.activity"] = ActivityCoalescer(app)
    return ext["chat.activity"]
