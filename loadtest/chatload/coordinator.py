"""The run's phases across locust processes: join everybody, send, fall quiet, count.

Roles follow locust's runner: the process that coordinates is the LocalRunner or the
MasterRunner; the processes that run users are the LocalRunner or the WorkerRunners. They
talk through locust's custom messages, which the LocalRunner delivers to itself, so one code
path serves a single process and a distributed run:

  worker -> coordinator  chat_ready   {n}        users of this process done joining (or failed)
  coordinator -> workers chat_go                 every planned user is in: senders start
  coordinator -> workers chat_quiesce            senders stop (test is stopping)
  coordinator -> workers chat_collect            grace is over: report your ledger
  worker -> coordinator  chat_ledger  {summary}  DeliveryLedger.summary()

Senders wait for chat_go so that fan-out figures describe the steady state, not the
registration storm of the ramp-up (whose REST, connect and join times are reported apart).
"""

from __future__ import annotations

import gc
import json
import logging
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
from gevent import monkey
from gevent.event import Event
from locust.env import Environment
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner

from . import report
from .ledger import DeliveryLedger, messages_sent, room_emits_by_node, tally
from .scenario import Scenario, new_run_id, sender_count
from .tails import DeliveryLog

if TYPE_CHECKING:
    from .user import ChatUser

log = logging.getLogger("chatload")

# How long the coordinator waits for the workers' ledgers once asked: they answer at once,
# so this only bounds a worker that died.
COLLECT_TIMEOUT_SECONDS = 15


class LostDelivery(Exception):
    """A member of the room never received a message it was owed."""


class Coordinator:
    """Per-process state of the chat scenario (one per locust Environment)."""

    def __init__(self, environment: Environment) -> None:
        self.env = environment
        runner = environment.runner
        self.coordinates = not isinstance(runner, WorkerRunner)
        self.runs_users = not isinstance(runner, MasterRunner)
        self._run_id_given = bool(environment.parsed_options.chat_run_id)
        self._planned_given = int(environment.parsed_options.chat_planned_users or 0)
        self.delivery_log: DeliveryLog | None = None
        self._reset()
        for name, handler in {
            "chat_ready": self._on_ready,
            "chat_go": self._on_go,
            "chat_quiesce": self._on_quiesce,
            "chat_collect": self._on_collect,
            "chat_ledger": self._on_ledger,
        }.items():
            runner.register_message(name, handler)

    def _reset(self) -> None:
        self.ledger = DeliveryLedger()
        if self.delivery_log is not None:
            self.delivery_log.close()
        # None unless asked for; only processes that run users receive anything.
        self.delivery_log = DeliveryLog.from_environment() if self.runs_users else None
        self.go = Event()
        self.quiet = False
        self.users: weakref.WeakSet[ChatUser] = weakref.WeakSet()
        self._next_local = 0
        self._ready_local = 0
        self._ready: dict[str, int] = {}
        self._summaries: dict[str, dict] = {}
        self._summaries_in = Event()
        self._scenario: Scenario | None = None
        self._tokens: dict[str, str] | None = None
        self.started = False
        self.finished = False
        self.go_time: float | None = None
        self.go_pending = False
        self.stop_time: float | None = None

    # -- every process ------------------------------------------------------------------

    def on_test_start(self) -> None:
        """A new test: fresh ledger; the coordinator fixes the derived options for everybody."""
        self._reset()
        self.started = True
        if not self.coordinates:
            return
        opts, runner = self.env.parsed_options, self.env.runner
        users = self._planned_given or int(
            getattr(runner, "target_user_count", 0) or opts.num_users or 0
        )
        if not users:
            log.warning("no planned user count (a shape?): pass --chat-planned-users N")
        opts.chat_planned_users = users
        opts.chat_sender_count = sender_count(opts.chat_senders, users)
        opts.chat_processes = runner.worker_count if isinstance(runner, MasterRunner) else 1
        opts.chat_active_run_id = opts.chat_run_id if self._run_id_given else new_run_id()
        sc = self.scenario
        log.info(
            "chat run %s: %d users over %d target(s), %s, %d sender(s) at %.3g msg/s, "
            "%d-char messages, %.0f%% long-polling",
            sc.run_id,
            users,
            len(sc.targets),
            f"rooms of {'/'.join(map(str, sc.room_sizes))}"
            if sc.room_sizes
            else "one room"
            if sc.room_size <= 0
            else f"rooms of {sc.room_size}",
            sc.senders,
            sc.rate,
            sc.message_size,
            100 * sc.polling_share,
        )

    @property
    def tokens(self) -> dict[str, str]:
        """Pre-registered users' tokens (--chat-tokens), read once per test."""
        if self._tokens is None:
            path = self.scenario.tokens_file
            self._tokens = json.loads(Path(path).read_text()) if path else {}
        return self._tokens

    @property
    def scenario(self) -> Scenario:
        if self._scenario is None:
            self._scenario = Scenario.from_options(self.env.parsed_options, self.env.host)
        return self._scenario

    def next_index(self) -> int:
        """A run-wide user index: workers interleave (locust dispatches users round-robin)."""
        local = self._next_local
        self._next_local += 1
        worker = getattr(self.env.runner, "worker_index", 0) or 0
        return local * self.scenario.processes + worker

    def user_ready(self) -> None:
        """One of this process's users finished joining, or gave up; tell the coordinator."""
        self._ready_local += 1
        self.env.runner.send_message("chat_ready", {"n": self._ready_local})

    # -- the users' side of the messages -------------------------------------------------

    def _on_go(self, environment: Environment, msg: Any, **_: Any) -> None:
        if getattr(self.env.parsed_options, "chat_gc_freeze", "on") == "on":
            freeze_what_is_held()
        self.go.set()

    def _on_quiesce(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.quiet = True

    def _on_collect(self, environment: Environment, msg: Any, **_: Any) -> None:
        for user in list(self.users):
            user.report_unacked()
        self.env.runner.send_message("chat_ledger", {"summary": self.ledger.summary()})
        if self.delivery_log is not None:  # after the ledger: the coordinator waits for that
            self.delivery_log.write()

    # -- the coordinator's side ----------------------------------------------------------

    def _on_ready(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._ready[msg.node_id] = msg.data["n"]
        planned = self.env.parsed_options.chat_planned_users
        if (
            self.go_time is None
            and not self.go_pending
            and sum(self._ready.values()) >= planned > 0
        ):
            self._start_sending()

    def _start_sending(self) -> None:
        opts = self.env.parsed_options
        settle = float(getattr(opts, "chat_settle", 0) or 0)
        if settle > 0:
            self.go_pending = True  # no second start from a late chat_ready
            log.info(
                "all %d users have joined: senders start in %g s", opts.chat_planned_users, settle
            )
            gevent.spawn_later(settle, self._go)
            return
        self._go()

    def _go(self) -> None:
        if self.finished:  # stopped during the settle: nothing was sent
            return
        self.go_time = time.time()
        opts = self.env.parsed_options
        duration = float(opts.chat_duration or 0)
        log.info(
            "all %d users have joined: senders start%s",
            opts.chat_planned_users,
            f"; stopping in {duration:g} s" if duration and opts.headless else "",
        )
        self.env.runner.send_message("chat_go")
        if duration > 0 and opts.headless:
            gevent.spawn_later(duration, self._end_of_duration)

    def _end_of_duration(self) -> None:
        log.info("--chat-duration reached, shutting down")
        self.env.runner.quit()

    def _on_ledger(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._summaries[msg.node_id] = msg.data["summary"]
        if len(self._summaries) >= self._expected_ledgers():
            self._summaries_in.set()

    def _expected_ledgers(self) -> int:
        runner = self.env.runner
        return runner.worker_count if isinstance(runner, MasterRunner) else 1

    def on_test_stopping(self) -> None:
        """Before users stop: quiet the senders, wait the grace, count, report."""
        if not self.coordinates or not self.started or self.finished:
            return
        self.finished = True
        runner, grace = self.env.runner, self.scenario.grace
        if self.go_time is not None:
            self.stop_time = time.time()
        runner.send_message("chat_quiesce")
        if self.go_time is not None:
            log.info("senders stopped; waiting %g s before counting deliveries", grace)
            gevent.sleep(grace)
        grace_ended_at = time.time() if self.go_time is not None else None
        runner.send_message("chat_collect")
        if not self._summaries_in.wait(COLLECT_TIMEOUT_SECONDS):
            log.error(
                "only %d of %d ledgers arrived; counts are partial",
                len(self._summaries),
                self._expected_ledgers(),
            )
        summaries = list(self._summaries.values())
        counts = tally(summaries)
        for _ in range(counts.lost):
            self.env.events.request.fire(
                request_type="fanout",
                name="lost",
                response_time=None,
                response_length=0,
                exception=LostDelivery("owed by seq, never received within the grace period"),
                context={},
            )
        if isinstance(runner, MasterRunner):
            # Let every worker send one more stats report that covers the grace period.
            gevent.sleep(WORKER_REPORT_INTERVAL + 1)
        report.finish(
            self.env,
            counts,
            self.go_time,
            self.stop_time,
            grace_ended_at,
            room_emits_by_node=room_emits_by_node(summaries),
            messages=messages_sent(summaries),
        )


def freeze_what_is_held() -> int:
    """Collect, then freeze what survives: the users, their clients and sockets, locust's own
    state. Returns the number of objects frozen.

    Why: with 500 users a process holds hundreds of thousands of objects, and each full
    collection walked them all: 6 per process per run, 60-95 ms each, in which no delivery
    of that process was read and none of its senders sent. 77-95 % of the deliveries above
    the p99 were in flight during one (chatload.tails, against the chat and the Node peer
    alike, 2026-12-01). Frozen, a collection walks only what was made since.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def install(environment: Environment) -> Coordinator:
    """Create the coordinator of this process and hook it to locust's events."""
    # python-socketio's client runs its loops and handlers in threads: they must be greenlets
    # of locust's hub, or they would fight it for the GIL and stall the whole process.
    if not monkey.is_module_patched("threading"):
        raise RuntimeError("threading is not monkey-patched: run this file with locust")
    coordinator = Coordinator(environment)
    environment.events.test_start.add_listener(lambda **_: coordinator.on_test_start())
    environment.events.test_stopping.add_listener(lambda **_: coordinator.on_test_stopping())
    environment.chat = coordinator  # type: ignore[attr-defined]
    return coordinator
