"""eventlet's WebSocket message bound and unmasking (chat/transport/eventlet_server.py), and
the canaries for what they rely on in eventlet. Through real eventlet workers:
test_abuse_payloads.py (a message that never ends is closed with 1009)."""

from __future__ import annotations

import inspect
import os

import pytest

from chat.transport.masking import unmask_from


def test_upstream_eventlet_bounds_messages_through_its_message_class():
    from eventlet import websocket

    source = inspect.getsource(websocket.RFC6455WebSocket._recv_frame)
    assert "self.Message(" in source and "message.push(" in source
    assert "max_frame_length" in inspect.signature(websocket.RFC6455WebSocket.Message).parameters
    from chat.transport import eventlet_server

    eventlet_server.bound_eventlet_messages()
    message = websocket.RFC6455WebSocket.Message(1, 10)
    message.push(b"a" * 6)
    with pytest.raises(websocket.FailedConnectionError):
        message.push(b"a" * 6)


def test_upstream_eventlet_unmasks_through_apply_mask():
    from eventlet import websocket

    assert "self._apply_mask(d, mask, length=dlen, offset=received)" in inspect.getsource(
        websocket.RFC6455WebSocket._recv_frame
    )
    data, mask = os.urandom(1001), tuple(os.urandom(4))  # a mask as _recv_frame unpacks it
    for offset in (0, 1, 2, 3, 5):
        # eventlet 0.41's own _apply_mask, byte by byte
        expected = b"".join(bytes((data[i] ^ mask[(offset + i) % 4],)) for i in range(999))
        assert unmask_from(data, mask, 999, offset) == expected


def test_upstream_eventlet_websocket_holds_its_tcp_socket_as_socket():
    from eventlet import websocket

    assert "self.socket = sock" in inspect.getsource(websocket.WebSocket.__init__)
    assert issubclass(websocket.RFC6455WebSocket, websocket.WebSocket)
