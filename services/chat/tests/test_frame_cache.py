"""Broadcast frames are built once per message, byte for byte what gevent-websocket would send."""

from __future__ import annotations

import pytest
from geventwebsocket.websocket import Header, WebSocket

from chat.transport.frame_cache import FrameCache


def gevent_websocket_frame(text: str) -> bytes:
    """What gevent-websocket's own send_frame writes for a text message."""
    payload = text.encode("utf-8")
    return bytes(Header.encode_header(True, WebSocket.OPCODE_TEXT, b"", len(payload), 0)) + payload


@pytest.mark.parametrize(
    "text",
    [
        '42["message",{"seq":1}]',
        "42" + "é" * 70,  # 140 bytes of UTF-8 in 72 characters: the 16-bit length form
        "4" + "x" * 70_000,  # the 64-bit length form
    ],
)
def test_a_text_frame_is_exactly_gevent_websockets(text: str):
    assert FrameCache().text_frame(text) == gevent_websocket_frame(text)


def test_the_same_message_object_is_encoded_once_for_every_recipient():
    cache = FrameCache()
    packet = "".join(["42", '["message",{"seq":2}]'])  # built at run time: not interned
    first = cache.text_frame(packet)
    assert all(cache.text_frame(packet) is first for _ in range(1000))
    twin = "".join(["42", '["message",{"seq":2}]'])
    assert twin is not packet
    assert cache.text_frame(twin) == first  # an equal string: same bytes, encoded again


def test_the_cache_is_bounded():
    cache = FrameCache()
    texts = [f"42[{i}]" for i in range(FrameCache.SIZE * 3)]
    for text in texts:
        cache.text_frame(text)
    assert len(cache) == FrameCache.SIZE
    assert cache.text_frame(texts[0]) == gevent_websocket_frame(texts[0])
