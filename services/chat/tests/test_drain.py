"""The drain's order: refuse new events, let running ones finish (acks go out), then close.

Fakes stand in for the Socket.IO server and the namespace; deploy/tests/
test_faults_rolling_restart.py drains real workers under chat.
"""

from __future__ import annotations

from types import SimpleNamespace

from chat.transport import drain as drain_module
from chat.transport.drain import POLL_SECONDS, Drain, in_progress


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


class Clock:
    """The drain's clock: it moves only when the drain sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# What every drain does first, and its last steps: both test transports closed.
STOP_LISTENING = ["close listener", "stop accepting events"]


def close_both(events_running: int) -> list[str]:
    return [f"close {sid} (abort=True, events running: {events_running})" for sid in ("a", "b")]


def a_drain(running: int, finish_after: int | None, seconds: float = 4.0):
    steps = Steps()
    namespace = Namespace(steps, running, finish_after)
    clock = Clock()

    def sleep(s: float) -> None:
        steps.log.append("wait")
        namespace.tick()
        clock.now += s

    eio = SimpleNamespace(
        sockets={sid: EngineIOSocket(sid, steps, namespace) for sid in ("a", "b")},
        reason=SimpleNamespace(SERVER_DISCONNECT="server disconnect"),
    )
    socketio = SimpleNamespace(server=SimpleNamespace(eio=eio), sleep=sleep)
    drain = Drain(socketio, on_exit=lambda: None, seconds=seconds, events=namespace, clock=clock)
    drain.close_listener = lambda: steps.log.append("close listener")
    return drain, steps, eio, clock


def test_running_handlers_finish_before_any_transport_closes():
    drain, steps, eio, clock = a_drain(running=2, finish_after=3)
    assert drain.drain() == 2
    assert steps.log == [
        *STOP_LISTENING,
        "wait",
        "wait",
        "wait",
        *close_both(events_running=0),
    ]
    assert eio.sockets == {}
    assert clock.now == 3 * POLL_SECONDS


def test_with_nothing_running_the_transports_close_at_once():
    drain, steps, _, clock = a_drain(running=0, finish_after=None)
    assert drain.drain() == 2
    assert steps.log == [
        *STOP_LISTENING,
        *close_both(events_running=0),
    ]
    assert clock.now == 0


def test_a_handler_that_never_ends_holds_the_transports_for_half_the_drain_at_most(monkeypatch):
    # A poll every 0.25 s (exact in binary) over a 2 s drain: half of it is exactly 4 polls.
    monkeypatch.setattr(drain_module, "POLL_SECONDS", 0.25)
    drain, steps, _, clock = a_drain(running=1, finish_after=None, seconds=2.0)
    assert drain.drain() == 2
    assert steps.log == [
        *STOP_LISTENING,
        "wait",
        "wait",
        "wait",
        "wait",
        *close_both(events_running=1),
    ]
    # At least and at most half the drain; the other half is left for requests in flight
    # (none here: the drain ends at once).
    assert clock.now == 1.0


def call(app, path: str, query: str = "") -> tuple[str, list[tuple[str, str]], list[bytes]]:
    answer: list = []
    environ = {"PATH_INFO": path, "QUERY_STRING": query}
    body = app(environ, lambda status, headers, exc_info=None: answer.extend([status, headers]))
    return answer[0], answer[1], list(body)


def inner(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "keep-alive")])
    return [f"in progress: {in_progress()}".encode()]


def test_the_middleware_counts_requests_in_flight_and_passes_them_through():
    drain, _, _, _ = a_drain(running=0, finish_after=None)
    before = in_progress()
    status, headers, body = call(drain.wsgi_middleware(inner), "/api/rooms")
    assert (status, headers) == (
        "200 OK",
        [("Content-Type", "text/plain"), ("Connection", "keep-alive")],
    )
    assert body == [f"in progress: {before + 1}".encode()]
    assert in_progress() == before


def test_while_draining_new_sessions_get_503_and_other_responses_close_the_connection():
    drain, _, _, _ = a_drain(running=0, finish_after=None)
    drain.draining = True
    app = drain.wsgi_middleware(inner)
    assert call(app, "/socket.io/", "EIO=4&transport=polling") == (
        "503 Service Unavailable",
        [("Content-Type", "text/plain"), ("Connection", "close"), ("Retry-After", "1")],
        [b"this worker is shutting down; reconnect"],
    )
    status, headers, _ = call(app, "/socket.io/", "EIO=4&transport=polling&sid=abc")
    assert (status, headers) == (
        "200 OK",
        [("Content-Type", "text/plain"), ("Connection", "close")],
    )
    status, headers, _ = call(app, "/api/rooms")
    assert headers == [("Content-Type", "text/plain"), ("Connection", "close")]
