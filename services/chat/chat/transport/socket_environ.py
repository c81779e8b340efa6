"""A connected socket's WSGI environ, cut down to what its events' request contexts read.

python-socketio keeps the environ of the request that opened each Engine.IO session for the
session's whole life (`Server.environ[eio_sid]`, handed to the connect handler and read by
Flask-SocketIO to build every event's request context). It is Flask-SocketIO's copy of the
server's environ, so it holds everything the server put there: the input and error streams,
every header, the WebSocket object, pywsgi's or eventlet's own entries, and through them the
request's parsed header objects and buffers. Engine.IO's WebSocket wrapper holds the same
dict. Once connected, a socket's events read only a dozen of its keys.

`keep_only_what_events_read` empties that same dict and puts those keys back (the dict is
shared, and its owners are python-socketio and Engine.IO: changing it in place, from the
connect handler that receives it, reaches no library internals). Nothing is kept that an
event does not read, so what the request held can go once the server's own handler lets go
of the request.
"""

from __future__ import annotations

from typing import Any

# What an event's request context reads from the environ after the connect, and who reads it:
KEPT_KEYS: tuple[str, ...] = (
    # Flask-SocketIO's _handle_event: the app whose request_context it opens, and the per
    # socket session copy it stores there when manage_session is on (off here; kept if set).
    "flask.app",
    "saved_session",
    # Werkzeug's Request (method, scheme, host, paths, query, remote_addr) and Flask's URL
    # adapter (Map.bind_to_environ: host, scheme, script name, path, method, query, and
    # Connection/Upgrade, which make its scheme ws/wss for a WebSocket).
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_NAME",
    "SERVER_PORT",
    "HTTP_HOST",
    "wsgi.url_scheme",
    "HTTP_CONNECTION",
    "HTTP_UPGRADE",
    # request.remote_addr (after ProxyFix, when TRUSTED_PROXY_HOPS is set: the client's).
    "REMOTE_ADDR",
)
# Left out, among others: wsgi.input, wsgi.errors, wsgi.websocket, eventlet.input, every other
# header (Origin and the Sec-WebSocket-* ones were read at the handshake; Cookie is only read
# for Flask's session, which the socket handlers do not use: with manage_session off each
# event then opens a new, empty one), pywsgi's and ProxyFix's own entries.


def keep_only_what_events_read(environ: dict[str, Any]) -> None:
    """Reduce `environ`, in place, to the KEPT_KEYS it has (the others are dropped).

    In place because python-socketio and Engine.IO hold this very dict; `clear()` also gives
    back the dict's own table, sized for the full environ (a dict never shrinks on `del`).
    Call it once a connection is accepted, from the connect handler: the request context
    that handler runs in may have read anything until then. Werkzeug adds
    "werkzeug.request" to it during each event (None once the event is done).
    """
    kept = {key: environ[key] for key in KEPT_KEYS if key in environ}
    environ.clear()
    environ.update(kept)
