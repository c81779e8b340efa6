"""A slow consumer: one member of a room stops reading its socket; the others do not wait.

Real worker process; the slow member is a raw WebSocket over a TCP socket with a 4 KB
receive buffer that joins the room and never reads again (testkit SlowConsumer), so the
worker's writes to it block once the kernel buffers are full. Engine.IO gives every socket
its own queue and writer task, so the fan-out to the others must not notice. The stated
bound: every other member receives every message within 1 s of its send while the slow
member is hundreds of kilobytes behind (the figures printed are the measurement).
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from testkit.clients import ChatClient, register
from testkit.rawsocket import SlowConsumer, server_send_queue_bytes

pytestmark = pytest.mark.e2e

MEMBERS = 5
MESSAGES = 100
MESSAGES_PER_SECOND = 20
# 3,900 emoji: within the 4,000-character cap, but 47 KB on the wire (Socket.IO's JSON writes
# each as two 6-byte escapes), so 100 messages put 4.6 MB in front of the slow member: more
# than its socket's send buffer takes (~2.7 MB here), and the worker's writes to it block.
TEXT = "\U0001f600" * 3_900
DELIVERY_BOUND_SECONDS = 1.0


def test_a_member_that_stops_reading_does_not_delay_the_others(start_worker):
    worker = start_worker(RATE_LIMIT_MESSAGES="100000")
    room = f"slow-{uuid.uuid4().hex[:6]}"
    slow = SlowConsumer(worker.url, register(worker.url)[1], room)
    members = [ChatClient(worker.url, register(worker.url)[1]) for _ in range(MEMBERS)]
    for m in members:
        assert m.join(room)["ok"]
    sender = members[0]

    arrivals: dict[str, list[float]] = {}
    lock = threading.Lock()

    def on_message(message: dict) -> None:
        now = time.monotonic()
        with lock:
            arrivals.setdefault(message["client_id"], []).append(now)

    for m in members:
        m.sio.on("message", on_message)
    try:
        check_delivery(worker, slow, sender, arrivals, lock)
    finally:  # a blocked writer would hold the worker's drain for its whole bound
        slow.close()
        for m in members:
            m.close()


def check_delivery(worker, slow, sender, arrivals, lock) -> None:
    room = slow.room
    sent_at: dict[str, float] = {}
    behind = []
    for i in range(MESSAGES):
        client_id = f"m{i}-{uuid.uuid4().hex[:6]}"
        sent_at[client_id] = time.monotonic()
        sender.sio.emit("message", {"room": room, "text": f"{i} {TEXT}", "client_id": client_id})
        if i % 10 == 0:
            behind.append(server_send_queue_bytes(worker.port, slow.local_port))
        time.sleep(1 / MESSAGES_PER_SECOND)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with lock:
            if len(arrivals) == MESSAGES and all(len(v) == MEMBERS for v in arrivals.values()):
                break
        time.sleep(0.05)
    backlog = server_send_queue_bytes(worker.port, slow.local_port)
    with lock:
        delays = sorted(t - sent_at[cid] for cid, times in arrivals.items() for t in times)
        complete = len(arrivals) == MESSAGES and all(len(v) == MEMBERS for v in arrivals.values())
    assert complete, f"{len(arrivals)} of {MESSAGES} messages reached all {MEMBERS} members"
    p50, p99 = delays[len(delays) // 2], delays[int(len(delays) * 0.99)]
    print(
        f"\nslow consumer {backlog // 1024} KB behind (worker's send queue to it; samples "
        f"{[b // 1024 for b in behind]} KB) while {MESSAGES} x 47 KB "
        f"went to {MEMBERS} other members: delivery p50 {p50 * 1000:.0f} ms, p99 "
        f"{p99 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms"
    )
    assert backlog > 64 * 1024, "the slow member never fell behind: the test proves nothing"
    assert delays[-1] < DELIVERY_BOUND_SECONDS
    assert worker.alive() and worker.tracebacks() == 0
