"""What the server pushes to rooms. Through the message queue when one is configured."""

from __future__ import annotations

from ..extensions import socketio
from ..schemas import MessagePayload


def channel(room_name: str) -> str:
    """The Socket.IO room that carries a chat room's events (prefixed so it never meets a sid).

    Lower-cased: room names are one identity whatever the case.
    """
    return f"room:{room_name.lower()}"


def message(room_name: str, payload: MessagePayload) -> None:
    """The `message` event to every socket in the room, on every worker."""
    # One emit per message: python-socketio encodes the packet once for all recipients.
    socketio.emit("message", payload, to=channel(room_name))


# Flask-SocketIO's emit passes ignore_queue on to python-socketio; typeshed's stub of it
# (types-Flask-SocketIO) does not list the keyword, hence the two ignores below.


def message_local(room_name: str, payload: MessagePayload) -> None:
    """The message to this worker's sockets in the room only (not through the queue)."""
    socketio.emit("message", payload, to=channel(room_name), ignore_queue=True)  # type: ignore[call-arg]


def typing(room_name: str, user: str, skip_sid: str | None) -> None:
    socketio.emit(
        "typing", {"room": room_name, "user": user}, to=channel(room_name), skip_sid=skip_sid
    )


def presence(room_name: str, users: list[str]) -> None:
    """The room's online list to this worker's sockets in it only.

    Every worker tells its own sockets (cluster/presence.py), so each client hears a change
    once; through the queue, every worker's copy would reach every client.
    """
    socketio.emit(  # type: ignore[call-arg]
        "presence", {"room": room_name, "users": users}, to=channel(room_name), ignore_queue=True
    )
