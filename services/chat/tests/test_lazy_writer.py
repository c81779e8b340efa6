"""The WebSocket writer on demand (chat/transport/lazy_writer.py) on one Engine.IO socket, and
the canaries for the python-engineio code it copies.

The socket runs its handler on a thread against a fake transport (Engine.IO's threading mode,
no server process), as tests/test_upstream_socket_limits.py does; the whole path under gevent
with real clients is in test_direct_write.py, test_pings.py and
deploy/tests/test_faults_slow_consumer.py (the lazy writer is on wherever direct writes are).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import threading
import time
import uuid

import engineio
import engineio_fakes
import pytest
from engineio import packet

from chat.transport import lazy_writer
from chat.transport.lazy_writer import LazyWriterSocket
from chat.transport.socket_limits import LimitedSocket

# sha256 of the python-engineio 4.15.1 methods lazy_writer copies or relies on.
UPSTREAM_SOURCE = {
    "_websocket_handler": "58afe122719282de1def07b5530c154fbf41a40481bc8a787c4eb7d94db56c9c",
    "poll": "d7d705066fd3b9487de647e24e548526a34264ca5b92a61705f26a7471b6e73f",
    "close": "05fac55831999f25188d658b733f8e1044d5325becfd3c87011a6b03d30003b9",
}


def test_upstream_engineio_version_is_the_one_the_handler_was_copied_from():
    assert importlib.metadata.version("python-engineio") == lazy_writer.TESTED_ENGINEIO_VERSION
    assert lazy_writer.UPSTREAM_OK


@pytest.mark.parametrize("method", sorted(UPSTREAM_SOURCE))
def test_upstream_engineio_websocket_handler_is_the_copied_code(method):
    source = inspect.getsource(getattr(lazy_writer._EngineIOSocket, method))
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert digest == UPSTREAM_SOURCE[method], (
        f"engineio Socket.{method} changed: compare it with LazyWriterHandler in "
        "chat/transport/lazy_writer.py, then update UPSTREAM_SOURCE and TESTED_ENGINEIO_VERSION"
    )


def test_the_limits_and_direct_writes_wrap_the_lazy_handler():
    mro = LazyWriterSocket.__mro__
    assert mro.index(LimitedSocket) < mro.index(lazy_writer.LazyWriterHandler)
    assert mro.index(lazy_writer.LazyWriterHandler) < mro.index(lazy_writer._EngineIOSocket)


class FakeWebSocket(engineio_fakes.FakeWebSocket):
    """The fake transport, with what direct_write looks for: `_sock`, a WebSocket whose
    `send_nowait` writes a frame now (returns the bytes not taken: b"" for all; None for
    nothing, when `full` is set)."""

    def __init__(self) -> None:
        super().__init__()
        self.direct: list[str] = []
        self.full = False
        self._sock = self

    def send_nowait(self, data: str) -> bytes | None:
        if self.full:
            return None
        self.direct.append(data)
        return b""


@pytest.fixture
def eio():
    server = engineio.Server(async_mode="threading", ping_interval=60)
    yield server
    for sock in list(server.sockets.values()):
        sock.closed = True


def until(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def open_socket(
    server, ws: FakeWebSocket, sid: str | None = None
) -> tuple[LazyWriterSocket, threading.Thread]:
    sid = sid or f"lazy-{uuid.uuid4().hex}"
    sock = LazyWriterSocket(server, sid)
    server.sockets[sid] = sock
    handler = threading.Thread(target=sock._websocket_handler, args=(ws,), daemon=True)
    handler.start()
    assert until(lambda: sock._lazy_ws is not None)
    return sock, handler


def the_client_goes(ws: FakeWebSocket, handler: threading.Thread) -> None:
    """The client closes: the reader loop meets the end and the handler returns."""
    ws.incoming.put(None)
    handler.join(5)
    assert not handler.is_alive()


def test_an_idle_websocket_has_no_writer_and_one_starts_for_a_queued_packet_then_ends(eio):
    ws = FakeWebSocket()
    sock, handler = open_socket(eio, ws)
    assert sock._lazy_writer is None and sock._writer_waiting
    ws.full = True  # the kernel takes nothing: the message goes through the queue
    sock.send(packet.Packet(packet.MESSAGE, data="hello"))
    assert until(lambda: ws.sent == ["4hello"])
    assert until(lambda: sock._lazy_writer is None)
    assert sock._writer_waiting and sock.queued_bytes == 0
    ws.full = False
    sock.send(packet.Packet(packet.MESSAGE, data="again"))  # idle again: written directly
    assert ws.direct == ["4again"] and sock._lazy_writer is None
    the_client_goes(ws, handler)
    assert sock.closed and ws.closed.is_set()


def test_an_idle_sockets_ping_is_written_directly_and_its_pong_counts(eio):
    ws = FakeWebSocket()
    sock, handler = open_socket(eio, ws)
    sock.last_ping = time.time()
    sock.send(packet.Packet(packet.PING))
    assert ws.direct == ["2"] and ws.sent == [] and sock._lazy_writer is None
    # Every PING is the same str object: one frame-cache entry for all (frame_cache.py).
    assert ws.direct[0] is lazy_writer.PING_TEXT
    assert sock._ping_written
    ws.incoming.put("3")
    assert until(lambda: sock.last_ping is None)
    the_client_goes(ws, handler)


def test_a_pong_counts_only_once_the_writer_has_written_its_ping(eio):
    ws = FakeWebSocket()
    sock, handler = open_socket(eio, ws)
    ws.full = True  # the PING goes through the writer
    ws.hold.clear()
    sock.last_ping = time.time()
    sock.send(packet.Packet(packet.PING))
    assert ws.writing.wait(5)  # the writer is midway through writing the PING
    ws.incoming.put("3")  # the PONG, before the PING was written
    assert until(lambda: sock._early_pong)
    assert sock.last_ping, "taken before its PING was written"
    ws.hold.set()  # the write completes; the writer finds the queue empty and ends
    assert until(lambda: sock.last_ping is None), "the PONG was not taken once its PING was written"
    assert ws.sent == ["2"] and sock.queued_bytes == 0
    assert until(lambda: sock._lazy_writer is None)
    the_client_goes(ws, handler)


def test_packets_queued_while_the_writer_writes_follow_in_order(eio):
    ws = FakeWebSocket()
    sock, handler = open_socket(eio, ws)
    ws.full = True
    ws.hold.clear()
    sock.send(packet.Packet(packet.MESSAGE, data="1"))
    assert ws.writing.wait(5)
    ws.full = False  # a direct write now would overtake the first: it must queue
    for data in ("2", "3"):
        sock.send(packet.Packet(packet.MESSAGE, data=data))
    assert ws.direct == []
    ws.hold.set()
    assert until(lambda: ws.sent == ["41", "42", "43"])
    assert until(lambda: sock._lazy_writer is None)
    the_client_goes(ws, handler)


def test_close_with_wait_returns_once_the_writer_has_taken_everything(eio):
    ws = FakeWebSocket()
    sock, handler = open_socket(eio, ws)
    closer = threading.Thread(target=sock.close, daemon=True)  # Engine.IO's disconnect: wait=True
    closer.start()
    closer.join(5)
    assert not closer.is_alive() and sock.closed
    assert ws.sent == ["1"]  # its CLOSE packet
    assert ws.closed.is_set()  # the writer met the end of the queue and closed the transport
    handler.join(5)
    assert not handler.is_alive()


def write_into_a_reset_connection(sock: LazyWriterSocket, ws: FakeWebSocket) -> None:
    """A message the writer must write (the kernel takes nothing at once) and fails to."""

    def reset(data: str) -> None:
        raise OSError("connection reset")

    ws.send = reset
    ws.full = True
    sock.send(packet.Packet(packet.MESSAGE, data="lost"))


def test_a_failed_write_ends_the_connection_and_no_writer_starts_again(eio):
    ws = FakeWebSocket()
    sock, handler = open_socket(eio, ws)
    write_into_a_reset_connection(sock, ws)
    handler.join(5)
    assert not handler.is_alive() and sock.closed and ws.closed.is_set()
    assert sock._lazy_done and sock._lazy_writer is None


def test_a_close_that_waits_returns_when_the_writer_has_already_ended_on_a_failed_write(eio):
    # The window between a failed write and the reader noticing: a server-side disconnect
    # (Engine.IO's close(wait=True) joins the queue) must not wait for a writer that is gone.
    ws = FakeWebSocket()
    ws.close = ws.closed.set  # the reader is not woken: it is still waiting for the client
    sock, handler = open_socket(eio, ws)
    write_into_a_reset_connection(sock, ws)
    assert ws.closed.wait(5) and until(lambda: sock._lazy_writer is None)
    assert sock._lazy_done and not sock.closed and handler.is_alive()
    closer = threading.Thread(target=sock.close, daemon=True)
    closer.start()
    closer.join(5)
    assert not closer.is_alive() and sock.closed
    assert sock.queue.qsize() == 0 and sock.queue.unfinished_tasks == 0
    the_client_goes(ws, handler)  # now the reader meets the end: its own None is taken too
    assert sock.queue.unfinished_tasks == 0


def test_nothing_sent_after_a_failed_write_is_counted_as_queued(eio):
    ws = FakeWebSocket()
    ws.close = ws.closed.set  # the reader is not woken: the socket stays open meanwhile
    sock, handler = open_socket(eio, ws)
    write_into_a_reset_connection(sock, ws)
    assert ws.closed.wait(5) and until(lambda: sock._lazy_writer is None)
    counted = sock.queued_bytes
    for _ in range(3):  # broadcasts still addressed to it until the reader notices
        sock.send(packet.Packet(packet.MESSAGE, data="x" * 1000))
    assert sock.queued_bytes == counted and sock.queue.qsize() == 0 and not sock._cut
    the_client_goes(ws, handler)
