"""The Engine.IO / WebSocket layer under python-socketio: servers, frames, per-socket limits.

One job per module:

- `http_server.py`: `serve()`, the WSGI server per async mode; the deadline on a request's
  head; the origin check before a WebSocket upgrade.
- `gevent_server.py`: gevent's WSGI server and handler (head deadline, a BoundedWebSocket
  for every upgrade).
- `eventlet_server.py`: eventlet's protocol (head deadline) and its WebSocket message bound.
- `frames.py`: reading and writing WebSocket frames under gevent, within a size limit.
- `frame_cache.py`: a broadcast's text frame built once for all its recipients.
- `masking.py`: unmasking a client's payload in one C-level XOR (both servers).
- `direct_write.py`: a message frame written by the emitting greenlet when the socket's
  writer is idle (gevent, DIRECT_WEBSOCKET_WRITES).
- `lazy_writer.py`: Engine.IO's WebSocket writer started only while a socket has something
  queued, and PINGs written like direct writes (gevent, with DIRECT_WEBSOCKET_WRITES).
- `socket_limits.py`: per Engine.IO socket: bytes queued, liveness by PONG, time to
  authenticate.
- `packet_filter.py`: Engine.IO/Socket.IO input no honest client sends, refused cheaply.
- `pings.py`: one ping task per worker for every socket (PingWheel).
- `sticky.py`: session ids tagged with SID_TAG, so nginx routes without a cookie.
- `drain.py`: the drain on SIGTERM.

Only `http_server.serve` imports gevent_server, eventlet_server, frames and frame_cache, in
the async mode that uses them: the other mode's server library is never imported.
"""
