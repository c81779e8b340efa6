"""A locust User that behaves like a chat client: REST sign-up, Socket.IO connect, join, talk.

Everything it measures goes through locust's request event:
  POST /api/users, POST /api/tokens  (locust's HttpSession times them)
  connect  websocket | polling       Socket.IO connect, up to the CONNECT ack
  join     room                      join event to its ack
  ack      message                   message event to its ack (failed: refused or never acked)
  fanout   same-node | cross-node    receiver's receive time - sender's send stamp
  fanout   duplicate                 a second delivery of the same (room, seq), as a failure
  fanout   lost                      fired by the coordinator at the end, one failure per delivery

The python-socketio client runs its read and write loops in threads; locust has monkey-patched
threading, so they are greenlets of this process's gevent hub (LoadClient: handlers run inline
in the read loop, see chatload.client).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

import socketio
from locust import HttpUser, constant_throughput, task

from .client import LoadClient
from .coordinator import Coordinator
from .scenario import DEFAULT_TARGET

log = logging.getLogger("chatload")


class AckRefused(Exception):
    """The server answered a message with {ok: false, error}."""


class NoAck(Exception):
    """The server never acknowledged a message before the grace period ended."""


class DuplicateDelivery(Exception):
    """The same (room, seq) reached the same member twice."""


class ChatUser(HttpUser):
    """One chat participant: every user receives; the scenario makes some of them senders."""

    # Overridden by --host; with --chat-targets the users spread over several base URLs.
    host = DEFAULT_TARGET

    def on_start(self) -> None:
        self.coord: Coordinator = self.environment.chat
        self.sc = self.coord.scenario
        self.index = self.coord.next_index()
        self.target = self.sc.targets[self.index % len(self.sc.targets)]
        self.client.base_url = self.target
        self.room = self.sc.room_of(self.index)
        self.sender = self.sc.is_sender(self.index)
        self.transport = self.sc.transports(self.index)[0]
        self.username = self.sc.username(self.index)
        self.node: str | None = None
        self.sio: socketio.Client | None = None
        self.stopping = False
        self._pending: dict[str, float] = {}  # client_id -> send time, until acked
        self._early: dict[tuple[str, int], tuple[float, bool, int, float]] = {}
        self._session = threading.Event()
        self._pace = constant_throughput(self.sc.rate) if self.sender else None
        self.coord.users.add(self)
        try:
            token = self.coord.tokens.get(self.username) or self._sign_up()
            if token and self.sc.dms:
                self.room = self._open_dm(token)
            if token and self.room:
                self._connect(token)
            if self.sio is not None:
                self._join()
        finally:
            self.coord.user_ready()

    def wait_time(self) -> float:
        return self._pace(self) if self._pace else 1.0

    @task
    def talk(self) -> None:
        if not self.sender or self.sio is None or self.coord.quiet:
            return
        if not self.coord.go.is_set():
            self.coord.go.wait(1.0)
            return
        self._send()

    def on_stop(self) -> None:
        self.stopping = True
        if not self.coord.finished:  # ramp-down while the test goes on: close its window
            self.coord.ledger.leave(self.username)
        if self.sio is not None:
            try:
                self.sio.disconnect()
            except Exception:  # the socket may already be gone; stopping either way
                log.debug("disconnect of %s failed", self.username, exc_info=True)

    # -- steps ------------------------------------------------------------------------

    def _sign_up(self) -> str | None:
        creds = {"username": self.username, "password": self.sc.password}
        with self.client.post("/api/users", json=creds, catch_response=True) as r:
            if r.status_code == 409:  # a rerun with the same --chat-run-id: just log in
                r.success()
        r = self.client.post("/api/tokens", json=creds)
        return r.json().get("token") if r.ok else None

    def _open_dm(self, token: str) -> str | None:
        """The DM with this user's partner (--chat-dms), once the partner has signed up."""
        partner = self.sc.partner_of(self.index)
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + self.sc.connect_timeout
        while True:
            with self.client.post(
                "/api/dms", json={"user": partner}, headers=headers, catch_response=True
            ) as r:
                if r.status_code in (200, 201):
                    return r.json()["name"]
                if r.status_code != 404 or time.monotonic() > deadline:
                    r.failure(f"{r.status_code} {r.text[:200]}")
                    return None
                r.success()  # the partner has not signed up yet: ask again
            time.sleep(0.2)

    def _connect(self, token: str) -> None:
        sio = LoadClient()
        sio.on("session", self._on_session)
        sio.on("message", self._on_message)
        sio.on("disconnect", self._on_disconnect)
        started = time.perf_counter()
        try:
            sio.connect(
                self.target,
                auth={"token": token},
                transports=[self.transport],
                wait_timeout=self.sc.connect_timeout,
            )
        except Exception as exc:
            self._fire("connect", self.transport, started, exc)
            return
        self._fire("connect", self.transport, started)
        self.sio = sio
        if not self._session.wait(self.sc.connect_timeout):
            self._fire("connect", "session", started, TimeoutError("no session event"))

    def _join(self) -> None:
        assert self.sio is not None
        self.coord.ledger.joining(self.username, self.room)
        started = time.perf_counter()
        try:
            ack = self.sio.call("join", {"room": self.room}, timeout=self.sc.connect_timeout)
            if not ack or not ack.get("ok"):
                raise AckRefused(json.dumps(ack)[:200])
        except Exception as exc:
            self.coord.ledger.join_failed(self.room, self.node)
            self._fire("join", "room", started, exc)
            return
        self._fire("join", "room", started)
        history = [m.get("seq", 0) for m in ack.get("messages", [])]
        # The node peer keeps no history; it says where live starts with last_seq instead.
        baseline = max([*history, int(ack.get("last_seq", 0))])
        for seq in self.coord.ledger.joined(self.username, self.room, baseline, self.node):
            latency_ms, same_node, size, received_at = self._early.pop((self.room, seq))
            self._fire_delivery(self.room, seq, latency_ms, same_node, size, True, received_at)
        self._early.clear()

    def _send(self) -> None:
        assert self.sio is not None
        client_id = uuid.uuid4().hex
        sent_at = time.time()
        stamp = {
            "r": self.sc.run_id,
            "t": sent_at,
            "n": self.node,
            "u": self.index,
            "p": "",
        }
        pad = self.sc.message_size - len(json.dumps(stamp, separators=(",", ":")))
        stamp["p"] = "x" * max(0, pad)
        text = json.dumps(stamp, separators=(",", ":"))
        self._pending[client_id] = time.perf_counter()
        try:
            self.sio.emit(
                "message",
                {"room": self.room, "text": text, "client_id": client_id},
                callback=lambda ack: self._on_ack(client_id, ack),
            )
        except Exception as exc:
            self._fire("ack", "message", self._pending.pop(client_id), exc)

    def report_unacked(self) -> None:
        """At the end of the grace period: every message still without an ack is a failure."""
        for client_id in list(self._pending):
            started = self._pending.pop(client_id, None)
            if started is not None:
                self._fire("ack", "message", started, NoAck("no ack within the grace period"))

    # -- Socket.IO handlers (greenlets of the client's read loop) ----------------------

    def _on_session(self, data: dict) -> None:
        self.node = data.get("node")
        self._session.set()

    def _on_ack(self, client_id: str, ack: Any) -> None:
        started = self._pending.pop(client_id, None)
        if started is None:
            return  # already counted as never acked
        if isinstance(ack, dict) and ack.get("ok"):
            self.coord.ledger.sent(self.room, ack["message"]["seq"])
            self._fire("ack", "message", started)
            if self.coord.delivery_log is not None:
                ms = (time.perf_counter() - started) * 1000
                self.coord.delivery_log.ack(self.room, ack["message"]["seq"], ms)
        else:
            self._fire("ack", "message", started, AckRefused(json.dumps(ack)[:200]))

    def _on_message(self, message: dict) -> None:
        received_at = time.time()
        try:
            stamp = json.loads(message["text"])
            if stamp["r"] != self.sc.run_id:
                return  # somebody else's message in our room: not part of the test
            room, seq = message["room"], int(message["seq"])
        except (KeyError, TypeError, ValueError):
            return
        latency_ms = (received_at - stamp["t"]) * 1000
        same_node = stamp["n"] == self.node
        size = len(message["text"])
        first = self.coord.ledger.receive(self.username, room, seq)
        if first is None:
            if room == self.room:  # before the join ack: counted once the baseline is known
                self._early[(room, seq)] = (latency_ms, same_node, size, received_at)
            return
        self._fire_delivery(room, seq, latency_ms, same_node, size, first, received_at)

    def _on_disconnect(self, reason: Any = None) -> None:
        if not self.stopping:
            self.environment.events.request.fire(
                request_type="connect",
                name="dropped",
                response_time=None,
                response_length=0,
                exception=ConnectionError(f"disconnected: {reason}"),
                context={},
            )

    # -- reporting --------------------------------------------------------------------

    def _fire_delivery(
        self,
        room: str,
        seq: int,
        latency_ms: float,
        same_node: bool,
        size: int,
        first: bool,
        received_at: float,
    ) -> None:
        """One delivery to locust's stats (and a first one to the delivery log, if any)."""
        if first and self.coord.delivery_log is not None:
            self.coord.delivery_log.delivery(
                room, seq, latency_ms, same_node, str(self.node), received_at
            )
        self.environment.events.request.fire(
            request_type="fanout",
            name=("same-node" if same_node else "cross-node") if first else "duplicate",
            response_time=latency_ms,
            response_length=size,
            context={},
            exception=None if first else DuplicateDelivery("delivered twice"),
        )

    def _fire(self, kind: str, name: str, started: float, exc: BaseException | None = None) -> None:
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=exc,
            context={},
        )
