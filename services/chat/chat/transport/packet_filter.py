"""Engine.IO / Socket.IO input that no honest client sends, refused quietly and cheaply.

python-engineio and python-socketio trust their peer more than a public endpoint may. What
the abuse tests (test_abuse_fuzz, test_abuse_payloads) found, and what is done here:

- A malformed Socket.IO packet (invalid JSON, JSON nested past the recursion limit, an
  unknown packet type, an event without a name or with a reserved one such as "connect")
  raised while being decoded or dispatched, and Engine.IO logged a full traceback for each:
  a client could write tracebacks into the log as fast as it could send, and a reserved
  name reached the connect handler. Such a packet is dropped, counted in
  chat_protocol_errors_total, and logged in one line at most once a second.
- An event whose payload does not decode (invalid JSON, nesting past the recursion limit,
  an integer of more than 4,300 digits) but whose header does: a client whose code built
  such a payload (a deeply nested object is valid JavaScript) would wait for its ack for
  ever. If it asks for one it gets `invalid` (answer_undecodable_event), with nothing done.
- Binary packets: this application sends and accepts none, and python-socketio buffers a
  binary event's attachments until as many as its header announces have arrived, with no
  bound. Dropped the same way, attachments and all; but a binary event that asks for an ack
  is answered with the error ack `invalid` (answer_binary_event), so a client waiting for it
  learns at once that bytes are refused instead of waiting forever.
- Engine.IO's disconnect of a polling session waits until a GET has drained the session's
  queue, while new requests for a closing session are refused: a POST that made Engine.IO
  disconnect (an unknown packet type, a body over the limit) held its request, and its
  connection, forever. Disconnects no longer wait (the client's next request gets 400 and
  it reconnects).
- A request for a session that is being closed raised KeyError('Session is disconnected')
  out of Engine.IO: a 500 with a traceback. It gets 400 "Invalid session", as for an
  unknown session.
- Engine.IO refuses a polling body of more than 16 packets (Payload.max_decode_packets: a
  400, every packet in it lost), but clients send in one POST whatever they buffered while
  the previous one was in flight: a bot emitting 20 messages over long-polling lost all 20.
  The limit is raised to POLLING_PACKETS_PER_BODY; the body stays bounded by
  max_http_buffer_size, and its events are handled one after another (async_handlers=False).
- An Engine.IO packet that does not decode (empty, a type that is not a digit, bytes that
  are not UTF-8, bad base64) raised out of Engine.IO's WebSocket loop or polling handler: a
  traceback per packet, the WebSocket dropped. A polling body is checked before Engine.IO
  reads it (400 "Bad payload"); a WebSocket message is checked as it is received (the
  connection is closed; frames.py under gevent, socket_limits.py in both modes).
"""

from __future__ import annotations

import functools
import io
import logging
import time
from collections.abc import Iterable
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import socketio
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from socketio import packet

from .. import metrics
from ..errors import Invalid, error_ack
from . import upstream
from .handler_task import run_on_own_task

log = logging.getLogger(__name__)

# What socket.io-parser (the reference implementation) refuses as event names from a peer.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
# Packets Engine.IO takes in one polling body (its own default: 16). A person's client
# buffers a handful while a POST is in flight, a flushing outbox or a bot some tens; a
# thousand of the smallest packets is a few KB, well inside the body limit.
POLLING_PACKETS_PER_BODY = 1000
# A hostile client can send thousands of bad packets a second; one line a second says enough.
LOG_EVERY_SECONDS = 1.0


class _ThrottledLog:
    def __init__(self) -> None:
        self.next_at = 0.0
        self.suppressed = 0

    def warn(self, reason: str, eio_sid: str) -> None:
        now = time.monotonic()
        if now < self.next_at:
            self.suppressed += 1
            return
        more = f" ({self.suppressed} more since the last report)" if self.suppressed else ""
        log.warning("dropped a packet from %s: %s%s", eio_sid, reason, more)
        self.next_at, self.suppressed = now + LOG_EVERY_SECONDS, 0


_dropped = _ThrottledLog()


def refused(kind: str, detail: str, peer: str) -> None:
    """Count and (throttled) log input refused as no valid packet."""
    metrics.protocol_errors.labels(kind).inc()
    _dropped.warn(detail, peer)


def engineio_problem(message: str | bytes) -> str | None:
    """Why this Engine.IO packet (one WebSocket message) does not decode, or None."""
    try:
        eio_packet.Packet(encoded_packet=message)
    except Exception as exc:  # ValueError, RecursionError, binascii.Error, ...
        return f"undecodable Engine.IO packet ({type(exc).__name__})"
    return None


def _polling_payload_problem(body: bytes) -> str | None:
    try:
        eio_payload.Payload(encoded_payload=body.decode("utf-8"))
    except Exception as exc:
        return f"undecodable polling payload ({type(exc).__name__})"
    return None


def protocol_problem(server: socketio.Server, data: Any) -> tuple[str, str] | None:
    """(kind, detail) if this Engine.IO message is no packet this application accepts."""
    if not isinstance(data, str):
        return "binary", "binary data"
    try:
        pkt = server.packet_class(encoded_packet=data)
    except Exception as exc:  # ValueError, RecursionError, ...: whatever the decoder raised
        return "undecodable", f"undecodable packet ({type(exc).__name__})"
    kind = pkt.packet_type
    if kind in (packet.BINARY_EVENT, packet.BINARY_ACK):
        return "binary", "binary packet"
    if kind == packet.EVENT:
        args = pkt.data
        if not (
            isinstance(args, list)
            and args
            and isinstance(args[0], str)
            and args[0] not in RESERVED_EVENTS
        ):
            return "malformed_event", "event without a name, or with a reserved one"
    elif kind not in (packet.CONNECT, packet.DISCONNECT, packet.ACK):
        return "unexpected_type", f"unexpected packet type {kind}"
    return None


BINARY_REFUSED = "binary payloads are not accepted; send text (e.g. base64) in JSON"
UNDECODABLE_REFUSED = "payload does not decode as JSON"
TOO_DEEP_REFUSED = "payload nests too deeply to decode"


class _UnparsedJSON:
    """Stands in for the JSON module of a packet class: leaves the payload undecoded."""

    @staticmethod
    def loads(text: str) -> None:
        return None


@functools.cache
def _header_class(packet_class: type) -> type:
    # python-socketio's Packet.decode parses the payload last, with `self.json.loads`
    # (test_upstream_socketio_decodes_an_event_header_without_its_payload).
    return type("HeaderOnly", (packet_class,), {"json": _UnparsedJSON})


def _header(server: socketio.Server, data: str) -> Any:
    """The packet's type, namespace and ack id, decoded as python-socketio decodes them, but
    without its JSON payload (which is what failed); None if even the header does not decode."""
    header_class = _header_class(server.packet_class)
    try:
        return header_class(encoded_packet=data)
    except Exception:  # never let an answer to bad input raise
        return None


def _answer_invalid(server: socketio.Server, eio_sid: str, header: Any, message: str) -> None:
    """Ack the refused event with `invalid`, if it asked for an ack on a connected namespace.

    Sent with Engine.IO's public send, as python-socketio sends its acks.
    """
    if header is None or header.id is None:
        return
    namespace = header.namespace or "/"
    if server.manager.sid_from_eio_sid(eio_sid, namespace) is None:
        return  # not connected to that namespace: python-socketio would not answer either
    ack = server.packet_class(
        packet.ACK, namespace=namespace, id=header.id, data=[error_ack(Invalid(message))]
    )
    server.eio.send(eio_sid, ack.encode())


def answer_binary_event(server: socketio.Server, eio_sid: str, data: Any) -> None:
    """Ack a binary event's header packet with `invalid`, if it asks for an ack.

    The handler never runs and the attachments that follow are dropped, so nothing of the
    event is stored.
    """
    if not isinstance(data, str):
        return
    header = _header(server, data)
    if header is not None and header.packet_type == packet.BINARY_EVENT:
        _answer_invalid(server, eio_sid, header, BINARY_REFUSED)


def answer_undecodable_event(server: socketio.Server, eio_sid: str, data: str, why: str) -> None:
    """Ack an event whose payload did not decode with `invalid`, if it asks for an ack (a
    binary event's with the binary refusal, as answer_binary_event would).

    `why` is protocol_problem's detail (it names the decoder's exception). The handler never
    runs, so nothing of the event is stored.
    """
    header = _header(server, data)
    if header is None:
        return
    if header.packet_type == packet.BINARY_EVENT:  # refused as binary whatever its JSON
        _answer_invalid(server, eio_sid, header, BINARY_REFUSED)
    elif header.packet_type == packet.EVENT:
        message = TOO_DEEP_REFUSED if "RecursionError" in why else UNDECODABLE_REFUSED
        _answer_invalid(server, eio_sid, header, message)


def harden(server: socketio.Server) -> None:
    """Install the packet filter and the non-waiting disconnect on a python-socketio Server.

    Raises upstream.UntestedUpstream on a python-socketio or python-engineio outside the
    tested range.
    """
    upstream.require("python-socketio", "packet_filter (wraps Server._handle_eio_message)")
    upstream.require("python-engineio", "packet_filter (Payload.max_decode_packets, disconnect)")
    eio = server.eio
    dispatch = server._handle_eio_message
    # A class attribute of python-engineio (4.x; test_upstream_engineio_polling_packet_limit).
    eio_payload.Payload.max_decode_packets = POLLING_PACKETS_PER_BODY

    def on_message(eio_sid: str, data: Any) -> Any:
        problem = protocol_problem(server, data)
        if problem is not None:
            refused(*problem, eio_sid)
            if problem[0] == "binary":
                answer_binary_event(server, eio_sid, data)
            elif problem[0] == "undecodable":
                answer_undecodable_event(server, eio_sid, data, problem[1])
            return None
        # On a task that ends, so the reader does not keep the handler's stack (handler_task).
        return run_on_own_task(eio, dispatch_if_open, eio_sid, data)

    def dispatch_if_open(eio_sid: str, data: str) -> Any:
        if eio_sid not in server.environ:
            # The session closed before this packet's turn came (messages are handled in
            # tasks of their own; a close can run between the reader starting this task and
            # the task running); python-socketio's connect handler would raise KeyError.
            # Checked here, on the task, with no switch before the dispatch.
            return None
        return dispatch(eio_sid, data)

    eio.on("message", on_message)
    disconnect_all = eio.disconnect

    def disconnect(sid: str | None = None) -> None:
        if sid is None:
            return disconnect_all()
        socket = eio.sockets.get(sid)
        if socket is not None:
            socket.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)
            eio.sockets.pop(sid, None)
        return None

    eio.disconnect = disconnect


def guard_engineio_http(wsgi_app: WSGIApplication, max_body_bytes: int) -> WSGIApplication:
    """WSGI wrapper for Engine.IO's HTTP side: polling bodies checked, closing sessions 400."""

    def bad(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
        start_response(status, [("Content-Type", "application/json")])
        return [body]

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO", "").startswith(
            "/socket.io"
        ):
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return bad(start_response, "400 BAD REQUEST", b'"Bad request"')
            if length > max_body_bytes:
                refused(
                    "too_large", f"polling body of {length} bytes", environ.get("REMOTE_ADDR", "?")
                )
                return bad(start_response, "413 PAYLOAD TOO LARGE", b'"Payload too large"')
            body = environ["wsgi.input"].read(length)
            problem = _polling_payload_problem(body)
            if problem is not None:
                refused("undecodable", problem, environ.get("REMOTE_ADDR", "?"))
                return bad(start_response, "400 BAD REQUEST", b'"Bad payload"')
            environ["wsgi.input"] = io.BytesIO(body)  # read once here, again by Engine.IO
        try:
            return wsgi_app(environ, start_response)
        except KeyError as exc:
            if not environ.get("PATH_INFO", "").startswith("/socket.io") or "Session" not in str(
                exc
            ):
                raise
            start_response("400 BAD REQUEST", [("Content-Type", "application/json")])
            return [b'"Invalid session"']

    return app
