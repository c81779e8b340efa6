"""How a worker process serves HTTP and WebSocket: the server per async mode, the deadline on
each request's head, and the origin check before a WebSocket upgrade.

With green.py, the one place that knows gevent and eventlet by name. `python -m chat` builds
the server here instead of calling `socketio.run`, for these reasons:

- WebSocket limits: frames and messages above max_http_buffer_size close the connection
  before their payload is read, and unmasking is one C-level XOR (frames.py under gevent,
  eventlet_server.py under eventlet).
- Origin before upgrade under gevent. gevent-websocket answers `101 Switching Protocols`
  before the application runs, so Engine.IO's same-origin check could only close a
  cross-site WebSocket after accepting it. An upgrade from an origin Engine.IO would refuse
  is served as plain HTTP instead, where Engine.IO answers 400 "Not an accepted origin."
  (eventlet's server upgrades inside the application, after Engine.IO's check.)
- A drain on SIGTERM (drain.py).
- A deadline on each request's line and headers (HEADER_TIMEOUT_SECONDS; slowloris), in both
  servers; eventlet's server also runs with debug off, which sent a 500's traceback to the
  client. The per-socket limits (bytes queued, liveness, time to authenticate) are
  socket_limits.py's, the same in both modes.
- Direct writes under gevent (DIRECT_WEBSOCKET_WRITES, direct_write.py): a message frame is
  written by the emitting greenlet when the socket's writer is idle, without Engine.IO's
  queue hop; `BoundedWebSocket.send_nowait` is that write, never waiting for the kernel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask

from .drain import Drain
from .origins import refuses_upgrade

log = logging.getLogger(__name__)

# nginx keeps idle connections to the workers open for 60 s (its upstream keepalive_timeout):
# a wait for the next request on a kept-alive connection must outlast that, or nginx could
# send a request into a connection the worker is closing.
KEEPALIVE_IDLE_SECONDS = 75


def serve(app: Flask, socketio: Any, mode: str, drain: Drain, access_log: bool) -> None:
    """Serve until drained (the drain ends the process); threading mode runs Werkzeug."""
    cfg = app.config
    host, port = cfg["HOST"], cfg["PORT"]
    from . import socket_limits

    socket_limits.start_sweeper(socketio)
    if mode == "gevent":
        from . import gevent_server

        if cfg["DIRECT_WEBSOCKET_WRITES"]:
            from . import direct_write

            direct_write.install()
            log.info("direct WebSocket writes: on (DIRECT_WEBSOCKET_WRITES)")
            # With direct writes the writer carries little: started only when it has to.
            from . import lazy_writer

            lazy_writer.install()
        server = gevent_server.make_server(
            app,
            host,
            port,
            max_message_bytes=cfg["MAX_HTTP_BUFFER_SIZE"],
            header_timeout_seconds=cfg["HEADER_TIMEOUT_SECONDS"],
            pre_start_hook=plain_http_for_foreign_origin(socketio),
            access_log=access_log,
        )
        drain.close_listener = server.close
        server.serve_forever()
    elif mode == "eventlet":
        import eventlet
        import eventlet.wsgi

        from . import eventlet_server

        eventlet_server.bound_eventlet_messages()
        eventlet_server.HeadDeadlineProtocol.header_timeout_seconds = cfg["HEADER_TIMEOUT_SECONDS"]
        listener = eventlet.listen((host, port))
        drain.close_listener = listener.close
        try:
            eventlet.wsgi.server(
                listener,
                app,
                log_output=access_log,
                # Its default sends a 500's traceback (paths, versions) to the client.
                debug=False,
                protocol=eventlet_server.HeadDeadlineProtocol,
            )
        except OSError:
            if not drain.draining:
                raise
    else:  # development only: no drain, SIGTERM ends the process at once
        socketio.run(app, host=host, port=port, log_output=access_log, allow_unsafe_werkzeug=True)
        return
    while True:  # the listener is closed: the drain finishes and exits the process
        socketio.sleep(1)


def plain_http_for_foreign_origin(socketio: Any) -> Callable[[Any], bool]:
    """gevent-websocket's pre_start_hook: True serves a request as plain HTTP, not upgraded.

    True for a WebSocket upgrade from an origin Engine.IO would refuse, so Engine.IO answers
    it 400 before anything is upgraded.
    """

    def hook(handler: Any) -> bool:
        environ = handler.environ
        if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
            return False
        # The policy Engine.IO itself asks (origins.py), so the two checks cannot disagree.
        return refuses_upgrade(socketio.server.eio.cors_allowed_origins, environ)

    return hook


def request_head_seconds(header_timeout: float, requests_read: int) -> float:
    """How long a connection may take to send a request's line and headers.

    The first request: HEADER_TIMEOUT_SECONDS from the connection's start. A later one on a
    kept-alive connection: the idle allowance (the wait for it includes idle time).
    """
    return header_timeout if requests_read == 0 else max(header_timeout, KEEPALIVE_IDLE_SECONDS)


def peer(handler: Any) -> str:
    """The client's address of a server's request handler, for the log."""
    address = getattr(handler, "client_address", None)
    return str(address[0]) if isinstance(address, tuple) else str(address)
