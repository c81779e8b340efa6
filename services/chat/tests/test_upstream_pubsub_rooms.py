"""Canary: python-socketio forwards enter_room/leave_room for another worker's sid.

realtime/notify.py adds and removes the sockets of a user on every worker by their sids
(from presence) through `Server.enter_room` / `Server.leave_room`; the pub/sub manager
publishes the change for a sid it does not hold, and the worker holding it applies it
(python-socketio 5.x `PubSubManager.enter_room` / `_handle_enter_room`; tested on 5.18.1).
"""

from __future__ import annotations

import socketio


class RecordingManager(socketio.PubSubManager):
    def __init__(self) -> None:
        super().__init__(channel="canary")
        self.published: list[dict] = []

    def initialize(self) -> None:  # no listener thread: nothing is received in this test
        socketio.Manager.initialize(self)

    def _publish(self, data: dict) -> None:
        self.published.append(data)


def test_upstream_room_changes_for_a_remote_sid_are_published():
    manager = RecordingManager()
    server = socketio.Server(client_manager=manager, async_mode="threading")
    server.enter_room("sid-on-another-worker", "notify:dm-1-2:bob", namespace="/")
    server.leave_room("sid-on-another-worker", "room:dm-1-2", namespace="/")
    assert [(m["method"], m["sid"], m["room"], m["namespace"]) for m in manager.published] == [
        ("enter_room", "sid-on-another-worker", "notify:dm-1-2:bob", "/"),
        ("leave_room", "sid-on-another-worker", "room:dm-1-2", "/"),
    ]
    assert "host_id" in manager.published[0]
    # ...and the worker that holds the sid applies what it hears.
    assert callable(socketio.PubSubManager._handle_enter_room)
    assert callable(socketio.PubSubManager._handle_leave_room)
