"""Real clients of the chat: REST over requests, Socket.IO over python-socketio."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import requests
import socketio

DEFAULT_PASSWORD = "correct horse battery"


def register(
    base_url: str, username: str | None = None, password: str = DEFAULT_PASSWORD
) -> tuple[str, str]:
    """Create a user and log in; returns (username, token)."""
    username = username or f"u{uuid.uuid4().hex[:12]}"
    r = requests.post(
        f"{base_url}/api/users", json={"username": username, "password": password}, timeout=10
    )
    r.raise_for_status()
    r = requests.post(
        f"{base_url}/api/tokens", json={"username": username, "password": password}, timeout=10
    )
    r.raise_for_status()
    return username, r.json()["token"]


class ChatClient:
    """A python-socketio client that records every event it receives, in order."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transports: list[str] | None = None,
        reconnection: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url, self.token = base_url, token
        self.events: dict[str, list[Any]] = defaultdict(list)
        self._cond = threading.Condition()
        self.sio = socketio.Client(reconnection=reconnection)
        self.sio.on("*", self._record)
        self.sio.connect(
            base_url,
            auth={"token": token},
            transports=transports or ["websocket"],
            headers=headers or {},
            wait_timeout=10,
        )

    def _record(self, event: str, data: Any = None) -> None:
        with self._cond:
            self.events[event].append(data)
            self._cond.notify_all()

    def call(self, event: str, data: Any, timeout: float = 10) -> Any:
        return self.sio.call(event, data, timeout=timeout)

    def join(self, room: str, since: int | None = None) -> dict:
        payload: dict[str, Any] = {"room": room}
        if since is not None:
            payload["since"] = since
        return self.call("join", payload)

    def send(self, room: str, text: str, client_id: str | None = None) -> dict:
        return self.call(
            "message", {"room": room, "text": text, "client_id": client_id or uuid.uuid4().hex}
        )

    def wait_for(self, event: str, predicate=lambda data: True, timeout: float = 10) -> Any:
        """The first recorded `event` whose data satisfies `predicate`, waiting if needed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for data in self.events[event]:
                    if predicate(data):
                        return data
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no {event!r} event matched within {timeout} s; "
                        f"got {self.events[event][-5:]}"
                    )
                self._cond.wait(left)

    def received(self, event: str) -> list[Any]:
        with self._cond:
            return list(self.events[event])

    def close(self) -> None:
        self.sio.disconnect()
