"""Canaries for what chatload/client.py overrides in python-engineio and python-socketio."""

from __future__ import annotations

import threading

from engineio import packet

from chatload.client import InlineDispatchEngineIOClient, LoadClient


def test_upstream_socketio_client_builds_its_engineio_client_through__engineio_client_class():
    assert type(LoadClient().eio) is InlineDispatchEngineIOClient


def test_upstream_engineio_client_runs_message_handlers_through__trigger_event_inline_here():
    # engineio.Client._receive_packet hands a MESSAGE to _trigger_event with run_async=True
    # (a thread or greenlet per packet); the override makes it run in the read loop.
    client = InlineDispatchEngineIOClient()
    ran_on = []
    client.on("message", lambda data: ran_on.append((data, threading.current_thread())))
    client._receive_packet(packet.Packet(packet.MESSAGE, data="hello"))
    assert ran_on == [("hello", threading.current_thread())]
