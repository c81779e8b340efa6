"""A fake WebSocket transport for driving one Engine.IO socket's handler on a thread
(Engine.IO's threading mode, no server process): test_socket_limits, test_lazy_writer; and the
WSGI environ of one Engine.IO HTTP request."""

from __future__ import annotations

import io
import queue
import threading


class FakeWebSocket:
    """A transport: `wait` returns what the test feeds it; `send` may be held by the test."""

    def __init__(self) -> None:
        self.incoming: queue.Queue = queue.Queue()
        self.sent: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self.writing = threading.Event()
        self.closed = threading.Event()

    def wait(self):
        return self.incoming.get(timeout=10)

    def send(self, data: str) -> None:
        self.writing.set()
        assert self.hold.wait(10)
        self.sent.append(data)

    def close(self) -> None:
        self.closed.set()
        self.incoming.put(None)


def wsgi_request(
    method: str = "GET",
    query: str = "EIO=4&transport=polling",
    body: bytes = b"",
    path: str = "/engine.io/",
    **headers: str,
) -> dict:
    """The WSGI environ of one Engine.IO HTTP request to localhost; `headers` are extra
    environ keys (e.g. HTTP_ORIGIN, HTTP_HOST)."""
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "HTTP_HOST": "localhost",
        **headers,
    }
