"""After the domain stored a message: what both transports (REST and Socket.IO) do with it.

domain/messages.py stores and returns; api/rooms.py and realtime/namespace.py hand its result
here, so the two cannot drift apart in what a new message sets off.
"""

from __future__ import annotations

from .. import metrics
from ..domain.messages import Posted
from . import notify, publish


def message_posted(posted: Posted) -> None:
    """Publish a newly stored message to its room, count it, and tell members not watching.

    In this order: the room's sockets get the `message` event (one emit, encoded once for
    every recipient) before the members outside it hear of it with a `room` notice, and both
    before the sender's ack or HTTP response. A retry that found the message already stored
    (`posted.created` False) sets off nothing: the first attempt did.
    The message is stored whatever happens here; notify.activity logs its failures and
    never raises.
    """
    if not posted.created:
        return
    message = posted.message
    publish.message(message["room"], message)
    metrics.messages_stored.inc()
    notify.activity(posted.room)
