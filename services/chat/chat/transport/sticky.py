"""Engine.IO session ids that name the worker that issued them.

Long-polling sends many HTTP requests per session, and only the worker that opened the
session knows its id. nginx keeps a browser on one worker with an affinity cookie, but
clients that keep no cookies (the official Node socket.io client by default, mobile apps,
bots) were spread over all workers and got 400 "Session ID unknown" on most requests. With
`SID_TAG` set, every id this worker issues is `<tag>.<Engine.IO's own id>`, and nginx sends
every request that carries `sid=<tag>.…` (every poll after the handshake, and the WebSocket
upgrade) to the worker with that tag (deploy/nginx/templates/chat.conf.template).

`Server.generate_id` is a public method of python-engineio's server (in its API reference,
not in its guide); the handshake takes the id from it. That it still does is checked by
`test_upstream_engineio_takes_the_session_id_from_generate_id`, and start-up refuses a
major version it was not tested with. python-socketio draws its own Socket.IO ids from the
same method, so they carry the tag too (harmless: they are only ever compared).
"""

from __future__ import annotations

import engineio

from . import upstream

# "." is not in the base64url alphabet of Engine.IO's ids nor allowed in a tag, so the tag
# is everything before the first one.
SEPARATOR = "."
# python-engineio 4.x issues the handshake's id from generate_id (tested on 4.15.1).


def tag_session_ids(eio_server: engineio.Server, tag: str) -> None:
    """From now on every session id `eio_server` (an engineio.Server) issues starts `<tag>.`.

    Raises upstream.UntestedUpstream on a python-engineio outside the tested range.
    """
    upstream.require("python-engineio", "SID_TAG (session ids from Server.generate_id)")
    generate = eio_server.generate_id

    def generate_id() -> str:
        return f"{tag}{SEPARATOR}{generate()}"

    eio_server.generate_id = generate_id
