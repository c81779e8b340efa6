"""The drain's order: refuse new events, let running ones finish (acks go out), then close.

Fakes stand in for the Socket.IO server and the namespace; deploy/tests/
test_faults_rolling_restart.py drains real workers under chat.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from chat.transport.drain import Drain


class Steps:
    def __init__(self) -> None:
        self.log: list[str] = []


class Namespace:
    """The EventGate: `finish_after` polls of the drain, its running handlers end."""

    def __init__(self, steps: Steps, running: int, finish_after: int | None) -> None:
        self.steps, self.events_running, self.finish_after = steps, running, finish_after
        self.accepting_events = True

    def stop_accepting_events(self) -> None:
        self.accepting_events = False
        self.steps.log.append("stop accepting events")

    def tick(self) -> None:
        if self.finish_after is not None:
            self.finish_after -= 1
            if self.finish_after <= 0:
                self.events_running = 0


class EngineIOSocket:
    def __init__(self, sid: str, steps: Steps, namespace: Namespace) -> None:
        self.sid, self.steps, self.namespace = sid, steps, namespace

    def close(self, wait: bool, abort: bool, reason: str) -> None:
        self.steps.log.append(
            f"close {self.sid} (abort={abort}, events running: {self.namespace.events_running})"
        )


def a_drain(running: int, finish_after: int | None, seconds: float = 4.0):
    steps = Steps()
    namespace = Namespace(steps, running, finish_after)

    def sleep(s: float) -> None:
        steps.log.append("wait")
        namespace.tick()
        time.sleep(s)

    eio = SimpleNamespace(
        sockets={sid: EngineIOSocket(sid, steps, namespace) for sid in ("a", "b")},
        reason=SimpleNamespace(SERVER_DISCONNECT="server disconnect"),
    )
    socketio = SimpleNamespace(server=SimpleNamespace(eio=eio), sleep=sleep)
    drain = Drain(socketio, on_exit=lambda: None, seconds=seconds, events=namespace)
    drain.close_listener = lambda: steps.log.append("close listener")
    return drain, steps, eio


def test_running_handlers_finish_before_any_transport_closes():
    drain, steps, eio = a_drain(running=2, finish_after=3)
    assert drain.drain() == 2
    assert steps.log == [
        "close listener",
        "stop accepting events",
        "wait",
        "wait",
        "wait",
        "close a (abort=True, events running: 0)",
        "close b (abort=True, events running: 0)",
    ]
    assert eio.sockets == {}


def test_with_nothing_running_the_transports_close_at_once():
    drain, steps, _ = a_drain(running=0, finish_after=None)
    drain.drain()
    assert "wait" not in steps.log
    assert steps.log[-2:] == [
        "close a (abort=True, events running: 0)",
        "close b (abort=True, events running: 0)",
    ]


def test_a_handler_that_never_ends_holds_the_transports_for_half_the_drain_at_most():
    drain, steps, _ = a_drain(running=1, finish_after=None, seconds=0.4)
    started = time.monotonic()
    drain.drain()
    waited = time.monotonic() - started
    assert steps.log[-1] == "close b (abort=True, events running: 1)"
    assert waited >= 0.2  # half the bound; the other half is left for requests in flight
