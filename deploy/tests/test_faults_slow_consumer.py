"""A slow consumer: one member of a room stops reading its socket; the worker cuts it off at a
bound on bytes, and the others get everything.

Real worker process, under each async mode; the slow member is a raw WebSocket over a TCP
socket with a 4 KB receive buffer that joins the room and never reads again (testkit
SlowConsumer), so the worker's writes to it block once the kernel buffers are full and what
follows waits in the worker's memory. The bound: at most MAX_SOCKET_QUEUE_BYTES (1 MiB by
default) queued for one socket; past it the worker empties that socket's queue and closes its
connection (no Engine.IO CLOSE packet: a Socket.IO client reconnects and catches up with
`since`). Delivery latency is the benchmark's business (docs/BENCHMARKS.md); here the others
must get every message, and the figures printed are the measurement.
"""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest

from testkit.clients import ChatClient, register, worker_metric
from testkit.processes import ASYNC_MODES, wait_for
from testkit.rawsocket import SlowConsumer, server_send_queue_bytes

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("async_mode", ASYNC_MODES, indirect=True, scope="module"),
]

MEMBERS = 5
MESSAGES = 100
MESSAGES_PER_SECOND = 20
# 3,900 emoji: within the 4,000-character cap, but 47 KB on the wire (Socket.IO's JSON writes
# each as two 6-byte escapes), so 100 messages put 4.6 MB in front of the slow member: more
# than its socket's buffers take plus the 1 MiB bound.
TEXT = "\U0001f600" * 3_900
FRAME_BYTES = 47 * 1024
MAX_SOCKET_QUEUE_BYTES = 1 << 20  # the default
CUT = re.compile(r"closing session \S+: (\d+) bytes queued behind the (\d+) being sent, (\d+) more")


def test_a_member_that_stops_reading_is_cut_off_at_the_bound(start_worker, async_mode):
    worker = start_worker(RATE_LIMIT_MESSAGES="100000")
    room = f"slow-{uuid.uuid4().hex[:6]}"
    slow_token = register(worker.url)[1]
    slow = SlowConsumer(worker.url, slow_token, room)
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
        check_cut_off(worker, slow, sender, arrivals, lock, async_mode)
        # What a cut-off client does: reconnect and catch up with `since`. The page of history
        # (100 x 47 KB: 4.7 MB in one ack) is larger than the bound, and gets through whole.
        back = ChatClient(worker.url, slow_token)
        try:
            ack = back.join(room, since=0)
            assert ack["ok"] and len(ack["messages"]) == MESSAGES, {**ack, "messages": "..."}
        finally:
            back.close()
        assert worker_metric(worker.url, "chat_sockets_cut_total", reason="send_queue") == 1
    finally:
        slow.close()
        for m in members:
            m.close()


def check_cut_off(worker, slow, sender, arrivals, lock, async_mode) -> None:
    room = slow.room
    rss_before = worker.rss_kb()
    sent_at: dict[str, float] = {}
    behind = []
    for i in range(MESSAGES):
        client_id = f"m{i}-{uuid.uuid4().hex[:6]}"
        sent_at[client_id] = time.monotonic()
        sender.sio.emit("message", {"room": room, "text": f"{i} {TEXT}", "client_id": client_id})
        if i % 10 == 0:
            behind.append(server_send_queue_bytes(worker.port, slow.local_port))
        time.sleep(1 / MESSAGES_PER_SECOND)

    def delivered() -> bool:
        with lock:
            return len(arrivals) == MESSAGES and all(len(v) == MEMBERS for v in arrivals.values())

    wait_for(delivered, 30, f"all {MESSAGES} messages at all {MEMBERS} members")
    # The slow member is gone: only the readers are connected.
    wait_for(
        lambda: worker_metric(worker.url, "chat_connected_clients") == MEMBERS,
        10,
        "the slow member disconnected",
    )
    cuts = CUT.findall(worker.log_text())
    rss_after = worker.rss_kb()
    with lock:
        delays = sorted(t - sent_at[cid] for cid, times in arrivals.items() for t in times)
    p50, p99 = delays[len(delays) // 2], delays[int(len(delays) * 0.99)]
    print(
        f"\n[{async_mode}] slow member cut off with {int(cuts[0][0]) // 1024 if cuts else '?'} "
        f"KB queued in the worker behind a {int(cuts[0][1]) // 1024 if cuts else '?'} KB "
        f"frame being written (bound {MAX_SOCKET_QUEUE_BYTES // 1024} KB) and "
        f"{max(behind) // 1024} KB in the kernel's send buffer (samples "
        f"{[b // 1024 for b in behind]} KB); worker RSS {rss_before // 1024} -> "
        f"{rss_after // 1024} MB; {MESSAGES} x 47 KB reached {MEMBERS} other members: "
        f"delivery p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms"
    )
    assert max(behind) > 64 * 1024, "the slow member never fell behind: the test proves nothing"
    assert len(cuts) == 1, cuts
    waiting, head, refused = (int(x) for x in cuts[0])
    # Cut when the next message would have passed the bound: what waited behind the one being
    # written was within it.
    assert MAX_SOCKET_QUEUE_BYTES - refused < waiting <= MAX_SOCKET_QUEUE_BYTES
    assert head <= FRAME_BYTES and refused <= FRAME_BYTES
    assert worker_metric(worker.url, "chat_sockets_cut_total", reason="send_queue") == 1
    assert worker.alive() and worker.tracebacks() == 0
