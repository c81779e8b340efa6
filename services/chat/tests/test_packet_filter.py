"""Canaries: what transport/packet_filter.py relies on in python-engineio and python-socketio.

Tested on python-engineio 4.15 and python-socketio 5.18. Each test fails the day upstream
changes what the reach relies on, instead of the worker failing quietly.
"""

from __future__ import annotations

import engineio
import socketio
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from socketio import packet

from chat.transport import packet_filter


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
