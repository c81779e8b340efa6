"""Flooding: one user far above the rate limit is refused with `rate_limited` and cannot slow
the room for the others; one user's connections are bounded.

Real worker process, real python-socketio clients and a raw WebSocket for the flooder (it
does not wait for acks: it writes as fast as the socket takes them).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta

import pytest

from testkit.clients import ChatClient, assert_still_serving, register
from testkit.processes import ASYNC_MODES
from testkit.rawsocket import RawWebSocket

pytestmark = [
    pytest.mark.e2e,
    # Every protection holds under each async mode (issue 14).
    pytest.mark.parametrize("async_mode", ASYNC_MODES, indirect=True, scope="module"),
]

RATE_LIMIT = 20  # messages per window, per user (RATE_LIMIT_MESSAGES)
WINDOW_SECONDS = 10
MAX_CONNECTIONS = 3  # MAX_CONNECTIONS_PER_USER
FLOOD_MESSAGES = 400
# Liveness bound for the others' messages while the flood runs (a timed check that they
# are not starved, not a speed claim; the printed percentiles are the measurement).
DELIVERY_BOUND_SECONDS = 2.0


# The settings of the module's worker (the `worker` fixture in conftest.py).
WORKER_ENV = {
    "RATE_LIMIT_MESSAGES": str(RATE_LIMIT),
    "RATE_LIMIT_WINDOW_SECONDS": str(WINDOW_SECONDS),
    "MAX_CONNECTIONS_PER_USER": str(MAX_CONNECTIONS),
}


def test_flooder_is_rate_limited_and_the_room_stays_prompt(worker):
    room = f"flood-{uuid.uuid4().hex[:6]}"
    _, flooder_token = register(worker.url)
    flooder = RawWebSocket(worker.url)
    assert flooder.connect({"token": flooder_token}).startswith("40")
    assert flooder.call("join", {"room": room})["ok"]
    members = [ChatClient(worker.url, register(worker.url)[1]) for _ in range(3)]
    for m in members:
        assert m.join(room)["ok"]
    listener = members[0]

    def flood() -> None:
        for i in range(FLOOD_MESSAGES):
            flooder.send(
                f"42{1000 + i}"
                + json.dumps(
                    [
                        "message",
                        {"room": room, "text": f"spam {i} " + "x" * 500, "client_id": f"spam-{i}"},
                    ]
                )
            )

    flooding = threading.Thread(target=flood)
    flooding.start()
    latencies, sent_ids = [], []
    for round_ in range(10):  # the others keep talking while the flood goes on
        for m in members[1:]:
            client_id = uuid.uuid4().hex
            started = time.monotonic()
            assert m.send(room, f"normal {round_}", client_id=client_id)["ok"]
            listener.wait_for(
                "message",
                lambda msg, c=client_id: msg["client_id"] == c,
                timeout=DELIVERY_BOUND_SECONDS,
            )
            latencies.append(time.monotonic() - started)
            sent_ids.append(client_id)
        time.sleep(0.05)
    flooding.join(30)

    acks: dict[int, dict] = {}
    deadline = time.monotonic() + 20
    while len(acks) < FLOOD_MESSAGES and time.monotonic() < deadline:
        packet = flooder.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(packet, str) and packet.startswith("43"):
            digits = packet[2:].split("[", 1)[0]
            acks[int(digits)] = json.loads(packet[2 + len(digits) :])[0]
    flooder.close()
    accepted = [a for a in acks.values() if a["ok"]]
    limited = [a for a in acks.values() if not a["ok"]]
    assert len(acks) == FLOOD_MESSAGES, "every flood message was answered"
    # A moving window: the first RATE_LIMIT get in, and no WINDOW_SECONDS-long interval
    # holds more (the flood is over long before a window passes, so: exactly the limit).
    assert len(accepted) == RATE_LIMIT
    stamps = sorted(datetime.fromisoformat(a["message"]["created_at"]) for a in accepted)
    busiest = max(
        sum(1 for s in stamps if t <= s < t + timedelta(seconds=WINDOW_SECONDS)) for t in stamps
    )
    assert busiest == RATE_LIMIT, busiest
    assert {a["error"]["code"] for a in limited} == {"rate_limited"}
    stored = listener.join(room, since=0)["messages"]
    assert len([m for m in stored if m["text"].startswith("spam")]) == len(accepted)
    # The room holds the others' messages and the admitted spam, nothing else.
    spam_ids = {a["message"]["client_id"] for a in accepted}
    assert sorted(m["client_id"] for m in stored) == sorted({*sent_ids, *spam_ids})
    latencies.sort()
    print(
        f"\nflood of {FLOOD_MESSAGES} x 0.5 KB: {len(accepted)} accepted, {len(limited)} "
        f"rate_limited; the room's other messages meanwhile: p50 "
        f"{latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms "
        f"(n={len(latencies)})"
    )
    for m in members:
        m.close()
    assert_still_serving(worker.url)


def test_connections_of_one_user_are_bounded(worker):
    _, token = register(worker.url)
    allowed = [RawWebSocket(worker.url) for _ in range(MAX_CONNECTIONS)]
    for raw in allowed:
        assert raw.connect({"token": token}).startswith("40")
    extra = RawWebSocket(worker.url)
    answer = extra.connect({"token": token})
    assert answer.startswith("44"), answer
    assert json.loads(answer[2:]) == {
        "message": "rate_limited",
        "data": {"code": "rate_limited", "message": "too many connections"},
    }
    extra.close()
    # Another user is not affected by this one's cap.
    assert_still_serving(worker.url)
    # Closing one frees its place.
    allowed.pop().close()
    deadline = time.monotonic() + 5
    while True:
        again = RawWebSocket(worker.url)
        answer = again.connect({"token": token})
        again.close()
        if answer.startswith("40") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.startswith("40"), answer
    for raw in allowed:
        raw.close()
