"""A broadcast to this worker's sockets (cluster/fanout.py): LocalFanout against Manager.

Each case builds the same python-socketio Server (threading mode) twice, once with
python-socketio's own Manager and once with LocalFanout, with recording Engine.IO sessions in
the server's session table, and asserts both deliver exactly the same packets to the same
sockets in the same order; then what LocalFanout does differently (no relays) and where it
steps aside.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import socketio
from engineio import packet as eio_packet
from socketio.manager import Manager

from chat.cluster.fanout import LocalFanout


class Session:
    """An Engine.IO session that records what it is sent."""

    def __init__(self, name: str, log: list[tuple[str, Any]]) -> None:
        self.name = name
        self.log = log
        self.closed = False

    def send(self, pkt: eio_packet.Packet) -> None:
        self.log.append((self.name, pkt))


def build(manager: Manager, sessions: int = 4) -> tuple[socketio.Server, list, list[str]]:
    """A server with `sessions` connected sessions a0..; every one in room:r, a0 also in room:s."""
    server = socketio.Server(client_manager=manager, async_mode="threading")
    log: list[tuple[str, Any]] = []
    sids = []
    for i in range(sessions):
        eio_sid = f"a{i}"
        server.eio.sockets[eio_sid] = Session(eio_sid, log)
        manager.connect(eio_sid, "/")
        sid = manager.sid_from_eio_sid(eio_sid, "/")
        manager.enter_room(sid, "/", "room:r")
        sids.append(sid)
    manager.enter_room(sids[0], "/", "room:s")
    return server, log, sids


def delivered(log: list[tuple[str, Any]]) -> list[tuple[str, int, Any]]:
    return [(name, pkt.packet_type, pkt.encode()) for name, pkt in log]


EMITS: list[tuple[str, dict[str, Any]]] = [
    ("a room", {"to": "room:r"}),
    ("a room, one skipped", {"to": "room:r", "skip_sid": "SKIP0"}),
    ("a room, a list skipped", {"to": "room:r", "skip_sid": ["SKIP0", "SKIP1"]}),
    ("two rooms", {"to": ["room:s", "room:r"]}),
    ("one session", {"to": "SID2"}),
    ("everyone", {}),
    ("no such room", {"to": "room:none"}),
]


def _resolve(kwargs: dict[str, Any], sids: list[str]) -> dict[str, Any]:
    def one(v: Any) -> Any:
        if isinstance(v, str) and v.startswith(("SKIP", "SID")):
            return sids[int(v.lstrip("SKIPD"))]
        return v

    return {k: [one(x) for x in v] if isinstance(v, list) else one(v) for k, v in kwargs.items()}


@pytest.mark.parametrize("data", [{"text": "hi", "seq": 1}, ("a", 2), None, "plain"])
@pytest.mark.parametrize("what,kwargs", EMITS, ids=[e[0] for e in EMITS])
def test_upstream_a_broadcast_reaches_the_same_sockets_with_the_same_packets_as_managers(
    what, kwargs, data
):
    # The canary of the copy: when python-socketio's Manager.emit changes what it sends, to
    # whom or in what order, this fails until LocalFanout.emit is checked against it.
    results = []
    for manager in (Manager(), LocalFanout()):
        server, log, sids = build(manager)
        server.emit("message", data, **_resolve(kwargs, sids))
        results.append(delivered(log))
    assert results[0] == results[1]
    assert results[1] or what == "no such room"


def test_every_recipient_is_handed_the_one_packet_object_straight(monkeypatch):
    manager = LocalFanout()
    server, log, _ = build(manager)
    relays: list[str] = []
    monkeypatch.setattr(socketio.Server, "_send_eio_packet", lambda *a: relays.append("sio"))
    monkeypatch.setattr(server.eio, "send_packet", lambda *a: relays.append("eio"))

    server.emit("message", {"text": "hi"}, to="room:r")

    assert [name for name, _ in log] == ["a0", "a1", "a2", "a3"]
    assert len({id(pkt) for _, pkt in log}) == 1
    assert log[0][1].encode() == '42["message",{"text":"hi"}]'
    assert relays == []


def test_a_closed_or_gone_session_takes_engineios_send_packet(caplog):
    manager = LocalFanout()
    server, log, _ = build(manager)
    server.eio.sockets["a1"].closed = True
    del server.eio.sockets["a2"]

    with caplog.at_level(logging.WARNING, logger="engineio.server"):
        server.emit("message", {"text": "hi"}, to="room:r")

    assert [name for name, _ in log] == ["a0", "a3"]
    assert "a1" not in server.eio.sockets  # Engine.IO forgets a closed session
    assert [r.getMessage() for r in caplog.records] == [
        "Cannot send to sid a1",
        "Cannot send to sid a2",
    ]


def test_an_emit_with_a_callback_or_binary_data_goes_managers_way():
    results = []
    for manager in (Manager(), LocalFanout()):
        server, log, _ = build(manager)
        server.emit("message", {"text": "hi"}, to="room:r", callback=lambda *a: None)
        server.emit("file", {"blob": b"\x00\x01"}, to="room:r")
        results.append(delivered(log))
    assert results[0] == results[1]
    assert len(results[1]) == 4 + 4 * 2  # 4 with an ack id each; 4 x (header, attachment)


def test_a_stand_in_for_the_servers_send_gets_every_packet():
    # Flask-SocketIO's test client patches `_send_eio_packet` on the server instance.
    manager = LocalFanout()
    server, log, _ = build(manager)
    relayed: list[str] = []
    server._send_eio_packet = lambda eio_sid, pkt: relayed.append(eio_sid)  # type: ignore[method-assign]

    server.emit("message", {"text": "hi"}, to="room:r")

    assert relayed == ["a0", "a1", "a2", "a3"]
    assert log == []


def test_upstream_engineio_keeps_its_sessions_in_sockets_by_sid():
    # LocalFanout looks recipients up there (socket_limits' sweep does too).
    server = socketio.Server(async_mode="threading")
    assert server.eio.sockets == {}
    session = Session("x", [])
    server.eio.sockets["x"] = session
    assert server.eio._get_socket("x") is session
