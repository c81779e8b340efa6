"""Engine.IO messages handled on a task of their own that the reader waits for
(chat/transport/handler_task.py), in each async mode."""

from __future__ import annotations

import threading

import engineio
import pytest

from chat.transport.handler_task import handle_on_this_greenlet, run_on_own_task


def current_task(mode: str) -> object:
    if mode == "gevent":
        import gevent

        return gevent.getcurrent()
    if mode == "eventlet":
        import eventlet

        return eventlet.getcurrent()
    return threading.current_thread()


@pytest.fixture(params=["threading", "gevent", "eventlet"])
def server(request) -> engineio.Server:
    return engineio.Server(async_mode=request.param)


def test_the_handler_runs_on_another_task_and_its_result_comes_back(server):
    reader = current_task(server.async_mode)
    ran_on = []

    def handler(a: int, b: str) -> str:
        ran_on.append(current_task(server.async_mode))
        server.sleep(0.05)  # the reader waits, across a switch, for the handler to end
        return f"{a}{b}"

    assert run_on_own_task(server, handler, 4, "2") == "42"
    assert len(ran_on) == 1 and ran_on[0] is not reader


def test_a_greenlet_that_ends_after_reading_runs_the_handler_itself():
    """A parked WebSocket's reading greenlet (parking.py) ends once what arrived is handled:
    no task of its own per message."""
    import gevent

    server = engineio.Server(async_mode="gevent")
    ran_on = []

    def reading() -> str:
        handle_on_this_greenlet()
        return run_on_own_task(server, lambda: ran_on.append(gevent.getcurrent()) or "done")

    reader = gevent.spawn(reading)
    assert reader.get(timeout=10) == "done"
    assert ran_on == [reader]


def test_an_exception_in_the_handler_is_raised_in_the_reader(server):
    error = KeyError("Session is disconnected")

    def handler() -> None:
        raise error

    with pytest.raises(KeyError) as raised:
        run_on_own_task(server, handler)
    assert raised.value is error


class Stop(BaseException):
    """Not an Exception: as gevent.Timeout and GreenletExit are not."""


def test_a_base_exception_in_the_handler_is_raised_in_the_reader_too(server):
    stop = Stop()

    def handler() -> None:
        raise stop

    with pytest.raises(Stop) as raised:
        run_on_own_task(server, handler)
    assert raised.value is stop


def test_upstream_engineio_eventlet_join_returns_before_an_unstarted_task_ran():
    # Why run_on_own_task waits on an event: python-engineio's EventletThread.join() tests
    # `if self.g`, and a green thread that has not started yet is false. When this fails,
    # join() waits as it should; the event still works either way.
    server = engineio.Server(async_mode="eventlet")
    ran = []
    task = server.start_background_task(ran.append, 1)
    task.join()
    assert ran == []
    server.sleep(0)
    assert ran == [1]


@pytest.mark.parametrize("mode", ["gevent", "eventlet"])
def test_a_session_closed_while_its_message_waits_for_its_task_is_not_dispatched(mode):
    # packet_filter's on_message checked that the session is open, then started the task; a
    # close that runs before the task does (a ping timeout, a server disconnect, the drain
    # closing every transport: any task ready in the same turn) removes the session's environ
    # in between. Dispatched anyway, a CONNECT raised KeyError in python-socketio's connect
    # handler (a traceback in the log) after registering the namespace for a session that is
    # gone.
    import socketio

    from chat.transport import packet_filter

    if mode == "gevent":
        import gevent

        spawn, result = gevent.spawn, lambda task: task.get()
    else:
        import eventlet

        spawn, result = eventlet.spawn, lambda task: task.wait()
    server = socketio.Server(async_mode=mode)
    packet_filter.harden(server)
    server._handle_eio_connect("eio1", {"REQUEST_METHOD": "GET"})
    on_message = server.eio.handlers["message"]

    # Started in this order, they run in this order: the reader's task comes after the close.
    reader = spawn(on_message, "eio1", "0")  # Socket.IO CONNECT to "/"
    closer = spawn(server._handle_eio_disconnect, "eio1", "transport close")
    result(closer)
    assert result(reader) is None  # raised KeyError before
    assert server.manager.sid_from_eio_sid("eio1", "/") is None  # was left registered
