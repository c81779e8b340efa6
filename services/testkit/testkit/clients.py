"""Real clients of the chat: REST over requests, Socket.IO over python-socketio (sioclient)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import requests

from . import sioclient

DEFAULT_PASSWORD = "correct horse battery"


def register(
    base_url: str, username: str | None = None, password: str = DEFAULT_PASSWORD
) -> tuple[str, str]:
    """Create a user and log in; returns (username, token)."""
    username = username or f"u{uuid.uuid4().hex[:12]}"
    r = requests.post(
        f"{base_url}/api/users", json={"username": username, "password": password}, timeout=10
    )
    r.raise_for_status()
    r = requests.post(
        f"{base_url}/api/tokens", json={"username": username, "password": password}, timeout=10
    )
    r.raise_for_status()
    return username, r.json()["token"]


class ChatClient:
    """A python-socketio client that records every event it receives, in order."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transports: list[str] | None = None,
        reconnection: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url, self.token = base_url, token
        self.events: dict[str, list[Any]] = defaultdict(list)
        self._cond = threading.Condition()
        self.sio = sioclient.Client(reconnection=reconnection)
        self.sio.on("*", self._record)
        self.sio.connect(
            base_url,
            auth={"token": token},
            transports=transports or ["websocket"],
            headers=headers or {},
            wait_timeout=10,
        )

    def _record(self, event: str, data: Any = None) -> None:
        with self._cond:
            self.events[event].append(data)
            self._cond.notify_all()

    def call(self, event: str, data: Any, timeout: float = 10) -> Any:
        return self.sio.call(event, data, timeout=timeout)

    def join(self, room: str, since: int | None = None) -> dict:
        payload: dict[str, Any] = {"room": room}
        if since is not None:
            payload["since"] = since
        return self.call("join", payload)

    def send(self, room: str, text: str, client_id: str | None = None) -> dict:
        return self.call(
            "message", {"room": room, "text": text, "client_id": client_id or uuid.uuid4().hex}
        )

    def wait_for(self, event: str, predicate=lambda data: True, timeout: float = 10) -> Any:
        """The first recorded `event` whose data satisfies `predicate`, waiting if needed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for data in self.events[event]:
                    if predicate(data):
                        return data
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no {event!r} event matched within {timeout} s; "
                        f"got {self.events[event][-5:]}"
                    )
                self._cond.wait(left)

    def received(self, event: str) -> list[Any]:
        with self._cond:
            return list(self.events[event])

    def close(self) -> None:
        self.sio.disconnect()


class RoomFollower:
    """A client that keeps a complete copy of one room, doing what the contract asks of one.

    - It reconnects by itself, and on every (re)connect joins the room with `since` = the
      highest seq up to which it holds every message, paging while the ack says `more`.
    - A live message whose seq is beyond the next one expected triggers the same catch-up.
    - `send` retries with the same client_id until the message is acknowledged (at-least-once
      on the wire; the server's (user, client_id) dedup keeps it exactly-once in the room).
    - A call waiting for its ack gives up when the connection drops (sioclient.Client), as the
      web client does, and is retried on the next connection.
    The copy is keyed by seq, so copies received twice on the wire collapse (`wire_duplicates`
    counts them) and two different messages under one seq would show up in `conflicts`.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        room: str,
        *,
        transports: list[str] | None = None,
        name: str = "",
    ) -> None:
        self.room, self.name = room, name
        self.log: dict[int, dict] = {}
        self.contiguous = 0  # every seq in 1..contiguous is in the log
        self.wire_duplicates = 0
        self.conflicts: list[tuple[dict, dict]] = []
        self.acked: list[dict] = []
        self.nodes: list[str] = []  # the node of every session, in order
        self.connected_at: list[float] = []
        self.disconnected_at: list[float] = []
        self.errors: list[str] = []
        # Called with each live message (not catch-up) as it arrives, e.g. to time delivery.
        self.on_live_message: Callable[[dict], None] | None = None
        self._synced_connects = 0  # how many connects had their catch-up completed
        self._lock = threading.Condition()
        self._sync_wanted = threading.Event()
        self._closing = False
        self.sio = sioclient.Client(
            reconnection=True,
            reconnection_delay=0.5,
            reconnection_delay_max=2,
            randomization_factor=0.5,
        )
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("session", self._on_session)
        self.sio.on("message", self._on_message)
        self._syncer = threading.Thread(
            target=self._sync_loop, daemon=True, name=f"follower-sync-{name or room}"
        )
        self._syncer.start()
        self.sio.connect(
            base_url, auth={"token": token}, transports=transports or ["websocket"], wait_timeout=10
        )
        self.wait_synced(timeout=15)

    # -- events (python-socketio's thread: never block here) --

    def _on_connect(self) -> None:
        with self._lock:
            self.connected_at.append(time.monotonic())
            self._lock.notify_all()
        self._sync_wanted.set()

    def _on_disconnect(self, reason: Any = None) -> None:
        with self._lock:
            self.disconnected_at.append(time.monotonic())
            self._lock.notify_all()

    def _on_session(self, data: dict) -> None:
        with self._lock:
            self.nodes.append(data.get("node"))
            self._lock.notify_all()

    def _on_message(self, message: dict) -> None:
        if message.get("room") != self.room:
            return
        if self.on_live_message is not None:
            self.on_live_message(message)
        if self._store([message]):
            self._sync_wanted.set()

    def _store(self, messages: list[dict]) -> bool:
        """Record messages; True when one lies beyond a gap (a catch-up is needed)."""
        with self._lock:
            for m in messages:
                held = self.log.get(m["seq"])
                if held is None:
                    self.log[m["seq"]] = m
                elif held["id"] == m["id"]:
                    self.wire_duplicates += 1
                else:
                    self.conflicts.append((held, m))
            while self.contiguous + 1 in self.log:
                self.contiguous += 1
            self._lock.notify_all()
            return any(m["seq"] > self.contiguous + 1 for m in messages) or (
                len(self.log) > self.contiguous
            )

    # -- catch-up, on its own thread --

    def _sync_loop(self) -> None:
        while not self._closing:
            if not self._sync_wanted.wait(timeout=0.5):
                continue
            self._sync_wanted.clear()
            try:
                self._catch_up()
            except Exception as exc:  # disconnected meanwhile: the next connect retries
                self.errors.append(f"catch-up: {type(exc).__name__}: {exc}")
                if self.sio.connected:
                    time.sleep(0.2)
                    self._sync_wanted.set()

    def _catch_up(self) -> None:
        connects = len(self.connected_at)
        # The connect event fires just before python-socketio marks the client connected.
        deadline = time.monotonic() + 2
        while not self.sio.connected:
            if time.monotonic() > deadline:
                return  # gone again: the next connect asks for another catch-up
            time.sleep(0.01)
        while True:
            ack = self.sio.call("join", {"room": self.room, "since": self.contiguous}, timeout=10)
            if not ack.get("ok"):
                raise RuntimeError(f"join refused: {ack}")
            self._store(ack["messages"])
            if not ack.get("more"):
                break
        with self._lock:
            self._synced_connects = connects
            self._lock.notify_all()

    def wait_synced(self, timeout: float = 10) -> None:
        """Until the room has been joined (with catch-up) since the latest connect."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self.connected_at or self._synced_connects < len(self.connected_at):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self.name}: not joined after {timeout} s; errors: {self.errors[-3:]}"
                    )
                self._lock.wait(left)

    def wait_reconnected(self, after: float, timeout: float = 20) -> float:
        """Until connected again (and caught up) since monotonic time `after`; returns when."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                later = [t for t in self.connected_at if t > after]
                if later and self._synced_connects == len(self.connected_at):
                    return later[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self.name}: not back within {timeout} s; errors: {self.errors[-3:]}"
                    )
                self._lock.wait(left)

    # -- what a test does --

    def send(
        self,
        text: str,
        *,
        deadline_seconds: float = 30,
        retry_codes: tuple[str, ...] = ("unavailable",),
    ) -> dict:
        """Send until acknowledged, retrying with the same client_id; the stored message."""
        client_id = uuid.uuid4().hex
        deadline = time.monotonic() + deadline_seconds
        last: Any = None
        while time.monotonic() < deadline:
            if not self.sio.connected:
                time.sleep(0.05)
                continue
            try:
                ack = self.sio.call(
                    "message", {"room": self.room, "text": text, "client_id": client_id}, timeout=5
                )
            except Exception as exc:  # disconnected or no ack in time: retry, same client_id
                last = exc
                continue
            if ack.get("ok"):
                with self._lock:
                    self.acked.append(ack["message"])
                return ack["message"]
            last = ack
            if ack.get("error", {}).get("code") not in retry_codes:
                raise RuntimeError(f"{self.name}: message refused: {ack}")
            time.sleep(0.2)
        raise TimeoutError(f"{self.name}: no ack within {deadline_seconds} s; last: {last}")

    def wait_for_seq(self, seq: int, timeout: float = 10) -> None:
        """Until every message up to `seq` is in the log."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.contiguous < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [s for s in range(1, seq + 1) if s not in self.log]
                    raise TimeoutError(
                        f"{self.name}: missing seqs {missing[:20]} after "
                        f"{timeout} s (errors: {self.errors[-3:]})"
                    )
                self._lock.wait(left)

    def seqs(self) -> list[int]:
        with self._lock:
            return sorted(self.log)

    def close(self) -> None:
        self._closing = True
        self.sio.disconnect()


def assert_room_logs_complete(followers: list[RoomFollower]) -> int:
    """Every follower holds every acknowledged message, seqs 1..N without gap or conflict.

    Returns N. Also checks that no message was stored twice (one client_id, one seq).
    """
    acked: dict[int, dict] = {}
    for f in followers:
        for m in f.acked:
            assert acked.setdefault(m["seq"], m)["id"] == m["id"], f"two acks for seq {m['seq']}"
    last = max(max(f.log, default=0) for f in followers)
    for f in followers:
        seqs = sorted(f.log)
        assert seqs == list(range(1, last + 1)), (
            f"{f.name}: gaps {sorted(set(range(1, last + 1)) - set(seqs))[:20]}"
        )
        assert f.conflicts == [], f"{f.name}: two messages under one seq: {f.conflicts[:3]}"
        for seq, m in acked.items():
            assert f.log[seq]["id"] == m["id"], f"{f.name}: seq {seq} is not the acked message"
        client_ids = [m["client_id"] for m in f.log.values() if m["client_id"]]
        assert len(client_ids) == len(set(client_ids)), f"{f.name}: a client_id stored twice"
    return last


class SteadyChat:
    """Followers sending steadily from their own threads until stopped: what faults meet.

    Each send is retried until acked (RoomFollower.send); a send that still fails is
    recorded in `failures`, never silently dropped.
    """

    def __init__(
        self, senders: list[RoomFollower], per_second: float, max_messages: int = 10_000
    ) -> None:
        self.senders, self.interval, self.max_messages = senders, 1.0 / per_second, max_messages
        self.failures: list[str] = []
        self.ack_seconds: list[float] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(s,), daemon=True) for s in senders
        ]

    def start(self) -> SteadyChat:
        for t in self._threads:
            t.start()
        return self

    def _run(self, sender: RoomFollower) -> None:
        for i in range(self.max_messages // len(self.senders)):
            if self._stop.is_set():
                return
            started = time.monotonic()
            try:
                sender.send(f"{sender.name} #{i}", deadline_seconds=60)
                self.ack_seconds.append(time.monotonic() - started)
            except Exception as exc:
                self.failures.append(f"{sender.name} #{i}: {exc}")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self, timeout: float = 90) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "a sender is still stuck"

    def sent(self) -> int:
        return sum(len(s.acked) for s in self.senders)


def assert_still_serving(
    base_url: str, token: str | None = None, room: str = "general", bound_seconds: float = 5.0
) -> float:
    """A normal client connects, joins, sends and gets its own message back, within the bound.

    Returns the send-to-receive time in seconds. Abuse tests call it after (or during) the
    abuse: the worker under attack must keep serving everyone else.
    """
    if token is None:
        _, token = register(base_url)
    client = ChatClient(base_url, token)
    try:
        assert client.join(room)["ok"]
        client_id = uuid.uuid4().hex
        started = time.monotonic()
        ack = client.send(room, "still here", client_id=client_id)
        assert ack["ok"], ack
        client.wait_for("message", lambda m: m.get("client_id") == client_id, timeout=bound_seconds)
        elapsed = time.monotonic() - started
        assert elapsed < bound_seconds
        return elapsed
    finally:
        client.close()


def worker_metric(base_url: str, name: str, **labels: str) -> float:
    """One sample of a worker's /metrics (0 when absent), e.g. chat_sockets_cut_total."""
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    wanted = f"{name}{{{selector}}}" if labels else name
    text = requests.get(base_url + "/metrics", timeout=5).text
    for line in text.splitlines():
        if line.rsplit(" ", 1)[0] == wanted:
            return float(line.rsplit(" ", 1)[1])
    return 0.0
