"""A chat worker (`python -m chat`) with one more Socket.IO event for test_socket_environ.

`environ` acks what an event's request context sees: the environ's keys, request.sid and
the request's address, host, path, scheme and query. Run as a script by that test only.
"""

# ruff: noqa: I001  (chat.__main__ monkey-patches the standard library: it comes first)
from __future__ import annotations

import chat.__main__ as entry

from typing import Any

from flask import request

from chat.realtime.namespace import ChatNamespace


def on_environ(self: ChatNamespace, *_args: Any) -> dict[str, Any]:
    return {
        "keys": sorted(request.environ),
        "sid": request.sid,  # type: ignore[attr-defined]
        "remote_addr": request.remote_addr,
        "host": request.host,
        "path": request.path,
        "scheme": request.scheme,
        "args": dict(request.args),
    }


ChatNamespace.on_environ = on_environ  # type: ignore[attr-defined]

if __name__ == "__main__":
    entry.main()
