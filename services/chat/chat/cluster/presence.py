"""Who is online in which room, across the cluster.

Each socket in a room is one entry `user|node|sid` in an expiring set per room. The worker
that owns the socket refreshes its entries every TTL/3 seconds; a worker that dies stops
refreshing, so its entries expire at most PRESENCE_TTL_SECONDS later and the next sweep by
any worker removes them and announces the change.

Presence is advisory: while the shared state is unreachable, sockets still connect, join
and leave (this worker's own view in `local` stays exact), and the next heartbeat after
recovery writes every local entry back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .shared_state import SharedState, StateUnavailable

log = logging.getLogger(__name__)

_SEP = "|"
ROOM_PREFIX = "chat:presence:"
CONN_PREFIX = "chat:conns:"


@dataclass
class LocalSocket:
    user: str
    rooms: set[str] = field(default_factory=set)


class Presence:
    """Presence entries for this worker's sockets, and the room-wide view of everyone's."""

    def __init__(self, state: SharedState, node_id: str, ttl: float) -> None:
        self.state, self.node_id, self.ttl = state, node_id, ttl
        self.local: dict[str, LocalSocket] = {}
        self.dirty: set[str] = set()  # rooms whose online list may have changed
        self._last_sent: dict[str, list[str]] = {}

    def _member(self, sid: str, user: str) -> str:
        return f"{user}{_SEP}{self.node_id}{_SEP}{sid}"

    def connect(self, sid: str, user: str) -> int:
        """Record a new socket; returns how many live sockets the user now has cluster-wide.

        Counts only this worker's sockets of the user while the shared state is unreachable.
        """
        self.local[sid] = LocalSocket(user)
        key = CONN_PREFIX + user
        try:
            self.state.add(key, self._member(sid, user), self.ttl)
            return len(self.state.members(key))
        except StateUnavailable as exc:
            log.warning("presence not shared: %s", exc)
            return sum(1 for s in self.local.values() if s.user == user)

    def disconnect(self, sid: str) -> None:
        sock = self.local.pop(sid, None)
        if sock is None:
            return
        member = self._member(sid, sock.user)
        self.dirty.update(sock.rooms)
        try:
            self.state.remove(CONN_PREFIX + sock.user, member)
            for room in sock.rooms:
                self.state.remove(ROOM_PREFIX + room, member)
        except StateUnavailable as exc:  # the entries expire within the TTL instead
            log.warning("presence not shared: %s", exc)

    def enter(self, sid: str, room: str) -> None:
        sock = self.local.get(sid)
        if sock is None or room in sock.rooms:
            return
        sock.rooms.add(room)
        self.dirty.add(room)
        try:
            self.state.add(ROOM_PREFIX + room, self._member(sid, sock.user), self.ttl)
        except StateUnavailable as exc:  # the next heartbeat after recovery writes it
            log.warning("presence not shared: %s", exc)

    def leave(self, sid: str, room: str) -> None:
        sock = self.local.get(sid)
        if sock is None or room not in sock.rooms:
            return
        sock.rooms.discard(room)
        self.dirty.add(room)
        try:
            self.state.remove(ROOM_PREFIX + room, self._member(sid, sock.user))
        except StateUnavailable as exc:  # the entry expires within the TTL instead
            log.warning("presence not shared: %s", exc)

    def online(self, room: str) -> list[str]:
        """Sorted distinct usernames with at least one live socket in the room, on any node."""
        return sorted({m.split(_SEP, 1)[0] for m in self.state.members(ROOM_PREFIX + room)})

    def heartbeat(self) -> None:
        """Refresh this worker's entries and drop everyone's expired ones."""
        entries: dict[str, list[str]] = {}
        for sid, sock in self.local.items():
            member = self._member(sid, sock.user)
            entries.setdefault(CONN_PREFIX + sock.user, []).append(member)
            for room in sock.rooms:
                entries.setdefault(ROOM_PREFIX + room, []).append(member)
        self.state.refresh(entries, self.ttl)
        for key in self.state.sweep(ROOM_PREFIX):
            self.dirty.add(key[len(ROOM_PREFIX) :])
        self.state.sweep(CONN_PREFIX)

    def changes(self) -> list[tuple[str, list[str]]]:
        """Rooms whose online list differs from what this worker last announced."""
        out = []
        dirty, self.dirty = self.dirty, set()
        try:
            for room in dirty:
                users = self.online(room)
                if users != self._last_sent.get(room, []):
                    # Only rooms with someone online are remembered: the map stays as big as
                    # what is live, not every room ever joined.
                    if users:
                        self._last_sent[room] = users
                    else:
                        self._last_sent.pop(room, None)
                    out.append((room, users))
        except StateUnavailable:
            self.dirty |= dirty  # announce them once the state is back
            raise
        return out
