"""The test clients notice a closed transport even when a packet was waiting to be sent."""

from __future__ import annotations

import queue
import threading
import time

import engineio
import pytest
import socketio
from engineio import packet

from testkit import sioclient
from testkit.sioclient import Client, EngineIOClient, StopStaysQueue


class AcceptingWebSocket:
    """A WebSocket whose peer has closed but whose kernel still takes bytes (no reset yet)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, data: str) -> None:
        self.sent.append(data)


def write_loop_after_close(client: engineio.Client) -> tuple[bool, list[str]]:
    """Run the client's write loop with a packet queued ahead of the read loop's stop marker.

    That is the queue as the read loop leaves it when the server closes the transport just
    after the application emitted something. Returns (still running after 2 s, frames sent).
    """
    ws = AcceptingWebSocket()
    client.ws, client.state, client.current_transport = ws, "connected", "websocket"
    client.ping_interval, client.ping_timeout = 25, 20
    client.queue.put(packet.Packet(packet.MESSAGE, data='2["join"]'))
    client.queue.put(None)
    loop = threading.Thread(target=client._write_loop, daemon=True)
    loop.start()
    loop.join(timeout=2)
    running = loop.is_alive()
    if running:  # let the upstream loop end instead of leaving it waiting 30 s
        client.state = "disconnected"
        client.queue.put(None)
        loop.join(timeout=2)
    return running, ws.sent


def test_the_write_loop_ends_after_sending_what_was_queued_before_the_stop():
    running, sent = write_loop_after_close(EngineIOClient())
    assert not running
    assert sent == ['42["join"]']


def test_upstream_engineio_still_loses_the_stop_so_the_fix_is_still_needed():
    # When this fails, python-engineio fixed its write loop: drop testkit.sioclient.
    running, sent = write_loop_after_close(engineio.Client())
    assert running
    assert sent == ['42["join"]']


class Owner:
    state = "connected"


@pytest.mark.parametrize("ahead", [0, 1, 3])
def test_the_stop_marker_is_handed_out_until_a_blocking_get_takes_it(ahead):
    q = StopStaysQueue(Owner())
    for i in range(ahead):
        q.put(i)
    q.put(None)
    taken = [q.get(block=False) for _ in range(ahead + 1)]
    assert taken == [*range(ahead), None]
    assert q.get(timeout=1) is None
    assert q.empty()


def test_emptying_the_queue_at_the_end_of_a_connection_takes_the_stop_marker_for_good():
    q = StopStaysQueue(Owner())
    q.put("CLOSE")
    q.put(None)
    drained = []
    while True:
        try:
            drained.append(q.get_nowait())
        except queue.Empty:
            break
    assert drained == ["CLOSE", None]
    assert q.empty()


def test_a_disconnecting_client_gets_its_stop_marker_once():
    owner = Owner()
    owner.state = "disconnecting"
    q = StopStaysQueue(owner)
    q.put(None)
    assert q.get(block=False) is None
    assert q.empty()


def a_connected_client() -> Client:
    """A Client that believes it is connected; what it sends goes nowhere."""
    client = Client(reconnection=False)
    client.namespaces, client.connected = {"/": "sid"}, True
    client._send_packet = lambda pkt: None
    return client


def call_in_background(client: Client) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(client.call("join", {"room": "r"}, timeout=30))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while len(client.callbacks.get("/", {})) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return thread, outcome


def test_a_call_still_waiting_when_the_connection_drops_fails_at_once():
    client = a_connected_client()
    thread, outcome = call_in_background(client)
    client._handle_eio_disconnect("transport error")
    thread.join(timeout=5)
    assert len(outcome) == 1 and isinstance(outcome[0], socketio.exceptions.DisconnectedError)


def test_a_call_returns_the_ack_as_python_socketio_does():
    client = a_connected_client()
    thread, outcome = call_in_background(client)
    # python-socketio keeps its ack id counter under key 0, the callbacks under their ids.
    (callback,) = [cb for ack_id, cb in client.callbacks["/"].items() if ack_id != 0]
    callback({"ok": True})
    thread.join(timeout=5)
    assert outcome == [{"ok": True}]


def test_upstream_socketio_client_builds_its_engineio_client_from__engineio_client_class():
    # Client swaps in EngineIOClient through this private method (python-socketio 5.18.1).
    assert isinstance(Client().eio, EngineIOClient)


def test_the_tested_ranges_are_the_workers():
    from chat.transport import upstream

    assert {name: upstream.TESTED[name] for name in sioclient.TESTED} == sioclient.TESTED


@pytest.mark.parametrize("package", ["python-engineio", "python-socketio"])
@pytest.mark.parametrize("installed", ["4.14.9", "6.0.0", "5.0.0"])
def test_a_client_refuses_a_library_outside_its_tested_range(monkeypatch, package, installed):
    real = sioclient.version
    monkeypatch.setattr(
        sioclient, "version", lambda name: installed if name == package else real(name)
    )
    low, high = sioclient.TESTED[package]
    with pytest.raises(sioclient.UntestedUpstream) as refused:
        Client()
    assert str(refused.value).startswith(
        f"testkit.sioclient relies on {package} internals tested on {low[0]}.{low[1]} up to "
        f"(not including) {high[0]}.{high[1]}; {installed} is installed"
    )
