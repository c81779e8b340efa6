"""What the server pushes to rooms. Through the message queue when one is configured."""

from __future__ import annotations

from ..extensions import socketio


def channel(room_name: str) -> str:
    """The Socket.IO room that carries a chat room's events (prefixed so it never meets a sid).

    Lower-cased: room names are one identity whatever the case.
    """
    return f"room:{room_name.lower()}"


def message(room_name: str, payload: dict) -> None:
    # One emit per message: python-socketio encodes the packet once for all recipients.
    socketio.emit("message", payload, to=channel(room_name))


def message_local(room_name: str, payload: dict) -> None:
    """The message to this worker's sockets in the room only (not through the queue)."""
    socketio.emit("message", payload, to=channel(room_name), ignore_queue=True)


def typing(room_name: str, user: str, skip_sid: str | None) -> None:
    socketio.emit(
        "typing", {"room": room_name, "user": user}, to=channel(room_name), skip_sid=skip_sid
    )


def presence(room_name: str, users: list[str]) -> None:
    socketio.emit("presence", {"room": room_name, "users": users}, to=channel(room_name))
