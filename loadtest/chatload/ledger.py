"""Delivery bookkeeping by message id: which live deliveries each member was owed and got.

A message is identified by (room, seq); seq is per room and gapless (the contract), so a
member that joined at `baseline` (the newest seq in its join ack) is owed every seq after it,
up to the room's last seq when the test ends (or up to what it had seen, if it left early).
Lost = owed but never received; duplicated = received more than once. One ledger lives in
each locust process that runs users; the process that coordinates merges their summaries,
because in a distributed run a room's members and senders sit in different processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


class SeqSet:
    """The seqs one member received after its baseline, compacted.

    Deliveries to one socket arrive in seq order almost always, so the set is kept as a
    watermark (every seq in (start, upto] received) plus the few seqs received beyond a gap.
    A set of every seq cost ~60 bytes a delivery: 2,000 members x 600 messages is 1.2 M
    entries per process; this keeps a few integers per member.
    """

    __slots__ = ("start", "upto", "ahead")

    def __init__(self, start: int = 0) -> None:
        self.start = start
        self.upto = start
        self.ahead: set[int] = set()

    def add(self, seq: int) -> bool:
        """Record seq (> start); False when it was already there."""
        if seq <= self.upto or seq in self.ahead:
            return False
        if seq == self.upto + 1:
            self.upto = seq
            ahead = self.ahead
            while self.upto + 1 in ahead:
                self.upto += 1
                ahead.discard(self.upto)
        else:
            self.ahead.add(seq)
        return True

    def update(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            self.add(seq)

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and (self.start < seq <= self.upto or seq in self.ahead)

    def __len__(self) -> int:
        return self.upto - self.start + len(self.ahead)

    def __iter__(self) -> Iterator[int]:
        yield from range(self.start + 1, self.upto + 1)
        yield from sorted(self.ahead)

    def highest(self) -> int | None:
        if self.ahead:
            return max(self.ahead)
        return self.upto if self.upto > self.start else None

    def count_upto(self, end: int) -> int:
        """How many received seqs are <= end."""
        return max(0, min(self.upto, end) - self.start) + sum(1 for s in self.ahead if s <= end)


@dataclass
class Membership:
    """One member's window in one room: owed every seq in (baseline, end]."""

    baseline: int | None = None  # None until the join ack has told us where live starts
    received: SeqSet = field(default_factory=SeqSet)
    early: list[int] = field(default_factory=list)  # live deliveries that beat the join ack
    end: int | None = None  # set when the member leaves before the test ends


class DeliveryLedger:
    """The deliveries of the members that run in this process."""

    def __init__(self) -> None:
        self.members: dict[tuple[str, str], Membership] = {}
        self.last_seq: dict[str, int] = {}  # highest seq seen per room, acked or received
        self.duplicates = 0
        self.nodes: dict[str, set[str]] = {}  # room -> the nodes its joined members are on
        # room -> the nodes of members whose join failed: the server may have put the socket
        # in the room before it failed (a store error after the subscription), or not.
        self.failed_nodes: dict[str, set[str]] = {}

    def joining(self, member: str, room: str) -> None:
        """The member asked to join; deliveries may arrive before the ack says where live starts."""
        self.members[(member, room)] = Membership()

    def joined(self, member: str, room: str, baseline: int, node: str | None = None) -> list[int]:
        """The join ack arrived; returns the early deliveries that count (seq after baseline).

        `node`: the server node the member's socket is on (its `session` event), for the
        message queue's figures (room_emits_by_node).
        """
        if node is not None:
            self.nodes.setdefault(room, set()).add(node)
        m = self.members.setdefault((member, room), Membership())
        m.baseline = baseline
        m.received = SeqSet(baseline)
        self._saw(room, baseline)
        counted = sorted({seq for seq in m.early if seq > baseline})
        m.received.update(counted)
        m.early.clear()
        return counted

    def receive(self, member: str, room: str, seq: int) -> bool | None:
        """Record one delivery: True first time, False duplicate, None not owed (history/early)."""
        self._saw(room, seq)
        m = self.members.get((member, room))
        if m is None:
            return None
        if m.baseline is None:
            if seq in m.early:
                self.duplicates += 1
                return False
            m.early.append(seq)
            return None
        if seq <= m.baseline:
            return None  # also in the join ack's history: the contract allows both
        if not m.received.add(seq):
            self.duplicates += 1
            return False
        return True

    def join_failed(self, room: str, node: str | None) -> None:
        """The member's join was refused or timed out: it may or may not be in the room."""
        if node is not None:
            self.failed_nodes.setdefault(room, set()).add(node)

    def sent(self, room: str, seq: int) -> None:
        """A sender's ack named this seq: every member of the room is owed it."""
        self._saw(room, seq)

    def leave(self, member: str) -> None:
        """The member stops before the test ends: it is owed only what came before its last."""
        for (who, _room), m in self.members.items():
            if who == member and m.end is None:
                highest = m.received.highest()
                m.end = highest if highest is not None else (m.baseline or 0)

    def _saw(self, room: str, seq: int) -> None:
        if seq > self.last_seq.get(room, 0):
            self.last_seq[room] = seq

    def summary(self) -> dict[str, Any]:
        """What the coordinator needs, as plain JSON-able data (it crosses locust's RPC)."""
        windows: dict[str, list[list[int | None]]] = {}
        for (_member, room), m in self.members.items():
            if m.baseline is None:
                continue  # never joined: not a member, owed nothing (its join failure is reported)
            end = m.end
            got = len(m.received) if end is None else m.received.count_upto(end)
            windows.setdefault(room, []).append([m.baseline, end, got])
        return {
            "last_seq": dict(self.last_seq),
            "windows": windows,
            "duplicates": self.duplicates,
            "nodes": {room: sorted(nodes) for room, nodes in self.nodes.items()},
            "failed_nodes": {room: sorted(nodes) for room, nodes in self.failed_nodes.items()},
        }


@dataclass(frozen=True)
class Tally:
    owed: int
    delivered: int
    lost: int
    duplicated: int
    rooms: int


def tally(summaries: list[dict[str, Any]]) -> Tally:
    """Merge the summaries of every process and count what is missing, by room."""
    last_seq: dict[str, int] = {}
    for s in summaries:
        for room, seq in s["last_seq"].items():
            last_seq[room] = max(seq, last_seq.get(room, 0))
    owed = delivered = 0
    rooms: set[str] = set()
    for s in summaries:
        for room, windows in s["windows"].items():
            rooms.add(room)
            for baseline, end, got in windows:
                # A room nobody sent in (fewer senders than rooms) owes nothing.
                newest = last_seq.get(room, baseline)
                owed += max(0, (newest if end is None else end) - baseline)
                delivered += got
    duplicated = sum(s["duplicates"] for s in summaries)
    return Tally(
        owed=owed,
        delivered=delivered,
        lost=owed - delivered,
        duplicated=duplicated,
        rooms=len(rooms),
    )


def room_emits_by_node(summaries: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per server node: the messages sent to rooms it has a joined member in, and those rooms.

    The rooms are fresh per run, so a room's messages are seqs 1..last_seq. A worker's message
    queue listener that hears exactly the rooms it has members in receives exactly
    `room_emits` room emits for them (the campaign compares it with the worker's
    chat_mq_received_total{kind="room"} over the send window).
    """
    last_seq: dict[str, int] = {}
    nodes: dict[str, set[str]] = {}
    failed: dict[str, set[str]] = {}
    for s in summaries:
        for room, seq in s["last_seq"].items():
            last_seq[room] = max(seq, last_seq.get(room, 0))
        for room, names in s.get("nodes", {}).items():
            nodes.setdefault(room, set()).update(names)
        for room, names in s.get("failed_nodes", {}).items():
            failed.setdefault(room, set()).update(names)
    out: dict[str, dict[str, int]] = {}
    for room in nodes.keys() | failed.keys():
        for node in nodes.get(room, set()) | failed.get(room, set()):
            entry = out.setdefault(node, {"room_emits": 0, "rooms": 0, "room_emits_max": 0})
            if node in nodes.get(room, set()):
                entry["room_emits"] += last_seq.get(room, 0)
                entry["rooms"] += 1
            # Were every failed join's socket in its room after all: the upper bound.
            entry["room_emits_max"] += last_seq.get(room, 0)
    return out


def messages_sent(summaries: list[dict[str, Any]]) -> int:
    """Messages sent in the run: the rooms are fresh per run, so the sum of their last seqs."""
    last_seq: dict[str, int] = {}
    for s in summaries:
        for room, seq in s["last_seq"].items():
            last_seq[room] = max(seq, last_seq.get(room, 0))
    return sum(last_seq.values())
