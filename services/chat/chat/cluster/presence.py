"""Who is online in which room, across the cluster.

Each socket in a room is one entry `user|node|sid` in an expiring set per room. The worker
that owns the socket refreshes its entries every TTL/3 seconds; a worker that dies stops
refreshing, so its entries expire at most PRESENCE_TTL_SECONDS later and the next sweep by
any worker with sockets in that room removes them (a room with nobody left to tell is not
swept: its entries are past their score, which every read filters on, and its set expires).
A room's keys are hash-tagged with its name (one Redis Cluster slot per room), and no key is
written or read by every worker on every heartbeat (there is no index of sets).

Each worker tells its OWN sockets, and only them, what their rooms' lists are: every change
(a join, a leave, a sweep, entries written back) sets the room's stamp in the shared state
after the change, and once a second each worker reads the stamps of the rooms its sockets
are in and re-reads the lists whose stamp moved. So a change reaches every client once
(from its own worker), never once per worker, and a worker that missed nothing through the
message queue still converges: the last read after the last change is the true list.

Redis runs without persistence, so a restart empties it. Every worker keeps a cluster
"epoch" (a random value in the shared state, set by whoever finds none) and checks it with
the stamps: an epoch it did not see means the entries may be gone, and the worker writes all
of its own back at once (not at the next heartbeat) and re-reads every list it announces.

Presence is advisory: while the shared state is unreachable, sockets still connect, join
and leave (this worker's own view in `local` stays exact), and the first read after
recovery writes every local entry back.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from .shared_state import SharedState, StateUnavailable, new_stamp

log = logging.getLogger(__name__)

_SEP = "|"
ROOM_PREFIX = "chat:presence:"
CONN_PREFIX = "chat:conns:"
# Outside ROOM_PREFIX, so no room name can collide with them.
STAMP_PREFIX = "chat:presence-stamp:"
EPOCH_KEY = "chat:presence-epoch"
_NEVER = object()  # a stamp this worker has not read yet (None is "no stamp in the state")
# After the shared state lost everything, the lists are incomplete until every worker has
# written its entries back, which each does on its first tick that reaches Redis (ticks every
# PRESENCE_FLUSH_SECONDS, 1 s; after a failed call shared_state fails fast for 1 s more).
# Announcing nothing for that long plus a second of slack spares clients a list that drops
# people for a moment; the true list follows right after.
SETTLE_AFTER_LOSS_SECONDS = 3.0


@dataclass(slots=True)
class LocalSocket:
    """One of this worker's sockets: its user, its entry `user|node|sid`, the rooms it is in."""

    user: str
    member: str
    rooms: set[str] = field(default_factory=set)


class Presence:
    """Presence entries for this worker's sockets, and the room-wide view of everyone's."""

    def __init__(
        self,
        state: SharedState,
        node_id: str,
        ttl: float,
        settle: float = SETTLE_AFTER_LOSS_SECONDS,
    ) -> None:
        self.state, self.node_id, self.ttl = state, node_id, ttl
        self.local: dict[str, LocalSocket] = {}
        # This worker's entries by key, kept as sockets come, go, enter and leave, so the
        # periodic work (the heartbeat every TTL/3, `changes()` every second) copies them
        # per key instead of walking every socket: at 8,000 idle sockets that walk was most
        # of the worker's presence CPU. Values are insertion-ordered sets (dicts of None).
        self._user_entries: dict[str, dict[str, None]] = {}  # user -> entries of their sockets
        self._room_entries: dict[str, dict[str, None]] = {}  # room -> entries of sockets in it
        self.dirty: set[str] = set()  # rooms whose online list may have changed here
        self._last_sent: dict[str, list[str]] = {}  # what this worker's sockets were told
        self._stamp_seen: dict[str, object] = {}
        self.epoch: str | None = None  # the shared state's epoch when this worker last wrote
        self.rewrite_due = True  # a write failed (or none yet): write everything back soon
        self.settle = settle
        self._settled_at = 0.0  # monotonic time before which nothing is announced

    def _member(self, sid: str, user: str) -> str:
        return f"{user}{_SEP}{self.node_id}{_SEP}{sid}"

    def connect(self, sid: str, user: str) -> int:
        """Record a new socket; returns how many live sockets the user now has cluster-wide.

        Counts only this worker's sockets of the user while the shared state is unreachable.
        """
        self._forget(sid)  # a sid seen again starts afresh, as its LocalSocket does
        member = self._member(sid, user)
        self.local[sid] = LocalSocket(user, member)
        self._user_entries.setdefault(user, {})[member] = None
        key = CONN_PREFIX + user
        try:
            self.state.add(key, member, self.ttl)
            return len(self.state.members(key))
        except StateUnavailable as exc:
            log.warning("presence not shared: %s", exc)
            self.rewrite_due = True
            return len(self._user_entries[user])

    def _forget(self, sid: str) -> LocalSocket | None:
        """Drop the socket from this worker's own view (not from the shared state)."""
        sock = self.local.pop(sid, None)
        if sock is None:
            return None
        _discard(self._user_entries, sock.user, sock.member)
        for room in sock.rooms:
            _discard(self._room_entries, room, sock.member)
        return sock

    def disconnect(self, sid: str) -> None:
        sock = self._forget(sid)
        if sock is None:
            return
        member = sock.member
        self.dirty.update(sock.rooms)
        try:
            self.state.remove(CONN_PREFIX + sock.user, member)
            for room in sock.rooms:
                self.state.remove(_room_key(room), member, stamp=_stamp_key(room))
        except StateUnavailable as exc:  # the entries expire within the TTL instead
            log.warning("presence not shared: %s", exc)

    def enter(self, sid: str, room: str) -> None:
        sock = self.local.get(sid)
        if sock is None or room in sock.rooms:
            return
        sock.rooms.add(room)
        member = sock.member
        self._room_entries.setdefault(room, {})[member] = None
        self.dirty.add(room)
        try:
            self.state.add(_room_key(room), member, self.ttl, stamp=_stamp_key(room))
        except StateUnavailable as exc:  # the first read after recovery writes it back
            log.warning("presence not shared: %s", exc)
            self.rewrite_due = True

    def leave(self, sid: str, room: str) -> None:
        sock = self.local.get(sid)
        if sock is None or room not in sock.rooms:
            return
        sock.rooms.discard(room)
        member = sock.member
        _discard(self._room_entries, room, member)
        self.dirty.add(room)
        try:
            self.state.remove(_room_key(room), member, stamp=_stamp_key(room))
        except StateUnavailable as exc:  # the entry expires within the TTL instead
            log.warning("presence not shared: %s", exc)

    def sids_of(self, user: str) -> list[str]:
        """The Socket.IO sids of every live socket of the user, on any node.

        Only this worker's own while the shared state is unreachable.
        """
        try:
            members = self.state.members(CONN_PREFIX + user)
        except StateUnavailable as exc:
            log.warning("presence not shared: %s", exc)
            return [m.rsplit(_SEP, 1)[-1] for m in self._user_entries.get(user, ())]
        return [m.rsplit(_SEP, 1)[-1] for m in members]

    def outside(self, room: str, users: list[str]) -> set[str]:
        """Those of `users` with a live socket, on any node, that has not joined `room`.

        Two round trips whatever the number of users: the room's entries, and each user's
        socket count. All of them while the shared state is unreachable: a notice to a user
        with no such socket costs an emit; one not sent to a user who has one is lost.
        """
        try:
            joined = Counter(m.split(_SEP, 1)[0] for m in self.state.members(_room_key(room)))
            counts = self.state.live_counts([CONN_PREFIX + u for u in users])
        except StateUnavailable as exc:
            log.warning("presence not shared: %s", exc)
            return set(users)
        return {u for u in users if counts.get(CONN_PREFIX + u, 0) > joined.get(u, 0)}

    def online(self, room: str) -> list[str]:
        """Sorted distinct usernames with at least one live socket in the room, on any node."""
        return _usernames(self.state.members(_room_key(room)))

    def local_rooms(self) -> set[str]:
        """The rooms at least one of this worker's sockets is in (O(rooms), not O(sockets))."""
        return set(self._room_entries)

    def heartbeat(self) -> None:
        """Refresh this worker's entries (writing back lost ones) and drop everyone's expired ones.

        Raises StateUnavailable (nothing is lost: the next call writes everything again).
        """
        # A copy per key (C-level list() of each set): the state call below may switch
        # greenlets, and sockets may come and go meanwhile.
        entries: dict[str, list[str]] = {
            CONN_PREFIX + user: list(members) for user, members in self._user_entries.items()
        }
        for room, members in list(self._room_entries.items()):
            entries[_room_key(room)] = list(members)
        self.rewrite_due = True  # until this write has gone through
        gained = [
            _room_of(k) for k in self.state.refresh(entries, self.ttl) if k.startswith(ROOM_PREFIX)
        ]
        # Only the rooms this worker has sockets in: another worker's are its own to sweep,
        # and a room with no live socket anywhere has nobody to tell (its entries are past
        # their score, so nobody reads them, and the set expires by itself).
        swept = [
            _room_of(k) for k in self.state.sweep([k for k in entries if k.startswith(ROOM_PREFIX)])
        ]
        # Entries written back (Redis lost them) or expired: every worker with sockets in
        # those rooms re-reads their lists.
        self.state.stamp([_stamp_key(room) for room in {*gained, *swept}])
        self.dirty.update(gained, swept)
        epoch = self.state.ensure(EPOCH_KEY, new_stamp())
        if self.epoch is not None and epoch != self.epoch:
            log.warning(
                "presence: the shared state was emptied; this worker's entries written back"
            )
            self._settled_at = time.monotonic() + self.settle
            self.dirty.update(self.local_rooms())
        self.epoch = epoch
        self.rewrite_due = False

    def changes(self) -> list[tuple[str, list[str]]]:
        """Rooms whose online list differs from what this worker's sockets were last told.

        Raises StateUnavailable; the rooms are then read again on the next call.
        """
        rooms = sorted(self.local_rooms())
        for room in set(self._last_sent) - set(rooms):  # nobody here to tell any more
            self._last_sent.pop(room, None)
            self._stamp_seen.pop(room, None)
        dirty, self.dirty = self.dirty, set()
        try:
            epoch, *stamps = self.state.stamps([EPOCH_KEY, *(_stamp_key(r) for r in rooms)])
            if self.rewrite_due or epoch != self.epoch:
                # Redis restarted empty (or a write of ours failed): our entries may be gone.
                self.heartbeat()
                dirty.update(rooms)
            if time.monotonic() < self._settled_at:  # other workers are still writing back
                self.dirty |= dirty
                return []
            stale = [
                (room, stamp)
                for room, stamp in zip(rooms, stamps, strict=True)
                if room in dirty or stamp != self._stamp_seen.get(room, _NEVER)
            ]
            lists = self.state.members_of([_room_key(room) for room, _ in stale])
        except StateUnavailable:
            self.dirty |= dirty  # read them once the state is back
            raise
        out = []
        for room, stamp in stale:
            self._stamp_seen[room] = stamp
            users = _usernames(lists[_room_key(room)])
            if users != self._last_sent.get(room):
                self._last_sent[room] = users
                out.append((room, users))
        return out


def _discard(index: dict[str, dict[str, None]], key: str, member: str) -> None:
    """Remove `member` from `index[key]`, and the key once nothing is left under it."""
    members = index.get(key)
    if members is None:
        return
    members.pop(member, None)
    if not members:
        del index[key]


def _room_key(room: str) -> str:
    """The room's set of entries. The hash tag (the room's name in braces) puts a room's keys,
    this one and its stamp, in one Redis Cluster slot: one node serves a room's change."""
    return f"{ROOM_PREFIX}{{{room}}}"


def _stamp_key(room: str) -> str:
    return f"{STAMP_PREFIX}{{{room}}}"


def _room_of(key: str) -> str:
    """The room of a _room_key."""
    return key[len(ROOM_PREFIX) + 1 : -1]


def _usernames(members: list[str]) -> list[str]:
    return sorted({m.split(_SEP, 1)[0] for m in members})
