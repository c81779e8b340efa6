"""The python-socketio client of the locust users, made cheap enough per delivery.

Kept apart from chatload.user so that it can be imported without locust (which monkey-patches
the standard library on import): the tests use it against a real worker with plain threads.
"""

from __future__ import annotations

import json
from typing import Any

import engineio
import socketio

from .wsbuffer import BufferedWebSocket


class InlineDispatchEngineIOClient(engineio.Client):
    """Runs each received packet's handler in the read loop, as a browser's event loop does.

    engineio.Client starts one thread (here: one greenlet) per received packet; at thousands
    of deliveries per second that spawn was a fifth of the load generator's CPU (py-spy).
    Our handlers never block, so running them inline loses nothing.
    """

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class StdlibJSONPacket(socketio.packet.Packet):
    """Socket.IO packets decoded with the standard json.loads.

    python-engineio's json.loads passes a parse_int guard against huge integers from untrusted
    peers, which makes json build a new decoder per call: 4.3 against 2.5 µs for a message
    event. The peer here is the server under test.
    """

    json = json


class LoadClient(socketio.Client):
    """python-socketio's client, made cheap enough per delivery to measure a server with."""

    def __init__(self) -> None:
        super().__init__(
            reconnection=False,
            logger=False,
            engineio_logger=False,
            serializer=StdlibJSONPacket,
            # websocket-client checks every text frame's UTF-8 in pure Python (a quarter of
            # the CPU per delivery); json.loads rejects a broken text anyway. It also reads a
            # frame with two recv() calls and several layers of Python: BufferedWebSocket
            # reads in chunks and takes whole text frames straight out of them.
            websocket_extra_options={
                "skip_utf8_validation": True,
                "class_": BufferedWebSocket,
            },
        )

    def _engineio_client_class(self) -> type[engineio.Client]:
        return InlineDispatchEngineIOClient
