"""What crosses Redis between workers is JSON, never pickle.

A worker that unpickled what it read from the message queue would run whatever anyone able
to PUBLISH on that Redis sent it. python-socketio's pub/sub managers encode with JSON;
this pins that, on the real channel of two real workers: a subscriber on the private
redis-server records every raw payload while the workers carry real chat traffic.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import redis
import requests

from testkit.clients import ChatClient, register
from testkit.processes import ASYNC_MODES, wait_for

pytestmark = [
    pytest.mark.e2e,
    # Every protection holds under each async mode (issue 14).
    pytest.mark.parametrize("async_mode", ASYNC_MODES, indirect=True, scope="module"),
]

PICKLE_PROTOCOL_2_AND_UP = b"\x80"  # the first byte of every pickle since protocol 2
METHODS = {"emit", "callback", "disconnect", "enter_room", "leave_room", "close_room", "heartbeat"}


def test_messages_between_workers_are_json(redis_server, start_worker):
    a = start_worker(NODE_ID="queue-a", REDIS_URL=redis_server.url)
    b = start_worker(NODE_ID="queue-b", REDIS_URL=redis_server.url)
    spy = redis.Redis(port=redis_server.port)
    room = f"queue-{uuid.uuid4().hex[:6]}"
    alice_name, alice_token = register(a.url)
    _, bob_token = register(b.url)
    alice, bob = ChatClient(a.url, alice_token), ChatClient(b.url, bob_token)
    assert alice.join(room)["ok"] and bob.join(room)["ok"]

    # The channels both workers' listeners hold (the control channel and the room's): found,
    # not assumed. Each user's own channels (`user:`, `notify:`) are held by one worker only.
    def channels() -> list[bytes]:
        names = spy.execute_command("PUBSUB", "SHARDCHANNELS")
        counts = spy.execute_command("PUBSUB", "SHARDNUMSUB", *names)[1::2] if names else []
        shared = [name for name, n in zip(names, counts, strict=True) if n == 2]
        return shared if len(shared) == 2 else []

    held = wait_for(channels, 10, "both listeners on the control and the room channel")
    subscriber = spy.pubsub()
    subscriber.ssubscribe(*held)
    payloads: list[bytes] = []
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            message = subscriber.get_sharded_message(ignore_subscribe_messages=True, timeout=0.2)
            if message and message["type"] == "smessage":
                payloads.append(message["data"])

    recorder = threading.Thread(target=record, daemon=True)
    recorder.start()

    texts = ["plain", '<b>html</b> & "quotes"', "unicode ✓ 漢字 👍", "\\u0000 looks escaped"]
    try:
        for text in texts:
            assert alice.send(room, text)["ok"]
        assert alice.call("typing", {"room": room})["ok"]
        r = requests.post(
            f"{b.url}/api/rooms/{room}/messages",
            json={"text": "over REST"},
            headers={"Authorization": f"Bearer {bob_token}"},
            timeout=5,
        )
        assert r.status_code == 201
        for text in [*texts, "over REST"]:
            bob.wait_for("message", lambda m, t=text: m["text"] == t)
        alice.wait_for("message", lambda m: m["text"] == "over REST")
        bob.wait_for("typing", lambda t: t["user"] == alice_name)
        assert alice.call("leave", {"room": room})["ok"]
        time.sleep(2.5)  # a presence flush and a heartbeat go by
    finally:
        alice.close()
        bob.close()
        stop.set()
        recorder.join(5)

    decoded = []
    for raw in payloads:
        assert not raw.startswith(PICKLE_PROTOCOL_2_AND_UP), raw[:40]
        message = json.loads(raw.decode("utf-8"))  # raises on anything but JSON text
        assert isinstance(message, dict) and message["method"] in METHODS, message
        assert isinstance(message["host_id"], str)
        decoded.append(message)
    emitted = {
        (m["event"], json.dumps(m["data"], sort_keys=True))
        for m in decoded
        if m["method"] == "emit"
    }
    events = {event for event, _ in emitted}
    # Every message of the room crossed the queue once as an emit (each worker's sockets
    # got it through its own listener), and the one typing notice did.
    sent = sorted([*texts, "over REST"])
    assert sorted(json.loads(d)[0]["text"] for e, d in emitted if e == "message") == sent
    assert sorted(m["text"] for m in bob.received("message")) == sent
    assert [e for e, _ in emitted if e == "typing"] == ["typing"]
    # Presence never travels the queue: each worker tells its own sockets (cluster/presence.py).
    assert "presence" not in events, events
    stored = {json.dumps([msg], sort_keys=True) for msg in bob.received("message")}
    assert {data for event, data in emitted if event == "message"} == stored
    print(
        f"\n{len(payloads)} payloads on {sorted(c.decode() for c in held)}: all JSON objects "
        f"({sorted(events)} emits, {sum(m['method'] == 'heartbeat' for m in decoded)} "
        f"heartbeats); none pickle"
    )
