"""Canaries: what transport/packet_filter.py relies on in python-engineio and python-socketio.

Tested on python-engineio 4.15 and python-socketio 5.18. Each test fails the day upstream
changes what the reach relies on, instead of the worker failing quietly.
"""

from __future__ import annotations

import engineio
import pytest
import socketio
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from engineio_fakes import wsgi_request
from socketio import packet

from chat.transport import packet_filter
from chat.transport.upstream import engineio_socket_class

# python-engineio's own class: a worker app built earlier in this process (pytest runs many
# files per process) installed the project's subclass as engineio.socket.Socket.
ENGINEIO_SOCKET = engineio_socket_class()


def test_upstream_engineio_polling_packet_limit_is_the_class_attribute_decode_reads():
    assert isinstance(eio_payload.Payload.max_decode_packets, int)
    body = "\x1e".join(
        eio_packet.Packet(eio_packet.MESSAGE, data=str(i)).encode() for i in range(17)
    )
    saved = eio_payload.Payload.max_decode_packets
    try:
        eio_payload.Payload.max_decode_packets = 16
        try:
            eio_payload.Payload(encoded_payload=body)
        except ValueError:
            pass
        else:
            raise AssertionError("engineio no longer limits packets per payload here")
        eio_payload.Payload.max_decode_packets = packet_filter.POLLING_PACKETS_PER_BODY
        assert len(eio_payload.Payload(encoded_payload=body).packets) == 17
    finally:
        eio_payload.Payload.max_decode_packets = saved


def test_upstream_socketio_decodes_a_binary_event_header_with_its_ack_id():
    header = socketio.Server().packet_class(
        encoded_packet='51-/,7["message",{"_placeholder":true,"num":0}]'
    )
    assert header.packet_type == packet.BINARY_EVENT
    assert header.id == 7 and header.namespace == "/"
    ack = socketio.Server().packet_class(packet.ACK, namespace="/", id=7, data=[{"ok": False}])
    assert ack.encode() == '37[{"ok":false}]'


def test_upstream_socketio_server_api_used_to_answer_binary_events():
    server = socketio.Server()
    assert callable(server.manager.sid_from_eio_sid)
    assert server.manager.sid_from_eio_sid("unknown", "/") is None
    assert callable(server.eio.send) and isinstance(server.eio, engineio.Server)


def test_upstream_socketio_dispatches_engineio_messages_through__handle_eio_message():
    # harden() re-registers Engine.IO's "message" handler around this private method.
    import inspect

    server = socketio.Server()
    assert server.eio.handlers["message"] == server._handle_eio_message
    assert list(inspect.signature(server._handle_eio_message).parameters) == ["eio_sid", "data"]
    # The session's environ, which the filter checks, is kept by Engine.IO session id.
    assert "self.environ[eio_sid] = environ" in inspect.getsource(server._handle_eio_connect)
    assert "del self.environ[eio_sid]" in inspect.getsource(server._handle_eio_disconnect)


def test_upstream_engineio_disconnects_through_its_own_attribute_and_waits():
    # harden() replaces `eio.disconnect` on the instance: Engine.IO's request handling calls
    # it as self.disconnect(sid), and its own closes a polling socket waiting for a GET.
    import inspect

    assert "self.disconnect(sid)" in inspect.getsource(engineio.Server.handle_request)
    assert "socket.close(reason=self.reason.SERVER_DISCONNECT)" in inspect.getsource(
        engineio.Server.disconnect
    )
    assert inspect.signature(ENGINEIO_SOCKET.close).parameters["wait"].default is True


def test_a_hardened_disconnect_does_not_wait_for_a_poll():
    server = socketio.Server(async_mode="threading")
    packet_filter.harden(server)
    eio = server.eio
    sock = ENGINEIO_SOCKET(eio, "s1")
    eio.sockets["s1"] = sock
    sock.send(eio_packet.Packet(eio_packet.MESSAGE, data="x"))  # nobody polls it
    eio.disconnect("s1")  # returns: the queue is not joined
    assert sock.closed and "s1" not in eio.sockets


def polling_request(method: str, sid: str, body: bytes = b"") -> dict:
    return wsgi_request(method, f"EIO=4&transport=polling&sid={sid}", body, path="/socket.io/")


def closed_session() -> tuple[engineio.Server, str]:
    server = engineio.Server(async_mode="threading")
    sock = ENGINEIO_SOCKET(server, "s1")
    sock.connected = True
    sock.closed = True  # closed, still in the table: a request raced its close
    server.sockets["s1"] = sock
    return server, "s1"


def test_upstream_engineio_raises_keyerror_session_is_disconnected_for_a_closed_session():
    # guard_engineio_http recognises this KeyError by its text ("Session"): when this fails,
    # the text or the exception changed and a 500 would come back.
    import pytest

    server, sid = closed_session()
    with pytest.raises(KeyError, match="Session is disconnected"):
        server.handle_request(polling_request("POST", sid, b"1:4"), lambda s, h: None)


def test_a_request_for_a_closed_session_gets_400_invalid_session():
    server, sid = closed_session()
    app = packet_filter.guard_engineio_http(server.handle_request, 1 << 16)
    answer: list = []
    body = app(polling_request("POST", sid, b"40"), lambda s, h: answer.append((s, h)))
    assert answer == [("400 BAD REQUEST", [("Content-Type", "application/json")])]
    assert body == [b'"Invalid session"']


def test_upstream_socketio_decodes_an_event_header_without_its_payload():
    # packet_filter._header relies on Packet.decode parsing type, namespace and ack id first
    # and the payload last, with `self.json.loads` (a class attribute it can stand in for).
    header_class = packet_filter._header_class(socketio.Server().packet_class)
    header = header_class(encoded_packet='2/chat,17["message",{"text":' + "[" * 5000)
    assert (header.packet_type, header.namespace, header.id, header.data) == (
        packet.EVENT,
        "/chat",
        17,
        None,
    )
    assert "json" in vars(socketio.packet.Packet)  # the class attribute the stand-in replaces
    with pytest.raises(RecursionError):
        socketio.Server().packet_class(encoded_packet='217["x",' + "[" * 100_000 + "]")


@pytest.mark.parametrize(
    "data",
    [
        '51-9["message",{"_placeholder":true,"num":0},"cut',  # invalid JSON
        '51-9["message",' + "[" * 5000 + "]" * 5000 + "]",  # nests too deeply
    ],
    ids=["invalid-json", "too-deep"],
)
def test_a_binary_event_whose_header_does_not_decode_still_gets_the_binary_refusal(data):
    # docs/API.md: a binary event that asks for an ack gets `invalid` "binary payloads are
    # not accepted"; its attachments are dropped either way. With a header whose JSON does
    # not decode it got no ack at all (answer_undecodable_event answered plain events only).
    server = socketio.Server(async_mode="threading")
    packet_filter.harden(server)
    server._handle_eio_connect("eio1", {"REQUEST_METHOD": "GET"})
    server.manager.connect("eio1", "/")
    sent: list[tuple[str, str]] = []
    server.eio.send = lambda sid, data: sent.append((sid, data))
    server.eio.handlers["message"]("eio1", data)
    assert [(sid, pkt[:2]) for sid, pkt in sent] == [("eio1", "39")]
    assert packet_filter.BINARY_REFUSED in sent[0][1]
