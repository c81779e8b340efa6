"""Socket.IO event handlers: validate with the shared schemas, call the domain, ack."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from functools import wraps
from time import perf_counter
from typing import Any

from flask import current_app, request
from flask_socketio import Namespace, join_room, leave_room
from pydantic import BaseModel, ValidationError
from socketio.exceptions import ConnectionRefusedError  # what flask_socketio re-exports

from .. import metrics, schemas
from ..cluster import rate_limit
from ..cluster.presence import Presence
from ..cluster.rate_limit import RateLimiter
from ..domain import messages, rooms
from ..domain.accounts import OpenSessions, Principal, authenticate_token
from ..domain.rooms import RoomRef
from ..errors import (
    ChatError,
    Forbidden,
    Invalid,
    Unauthorized,
    Unavailable,
    error_ack,
    from_unexpected,
    invalid_from_validation,
)
from ..extensions import db, socketio, socketio_server
from ..transport.socket_environ import keep_only_what_events_read
from . import delivery, notify, publish

log = logging.getLogger(__name__)

# A connect whose read of the user's rooms failed retries it in the background after these
# pauses, each stretched by 0.5-1.5x so that a burst's failures do not retry together (about
# 31 s in all, plus each failed read's wait): under a burst of connects the pool frees up
# within seconds.
SUBSCRIBE_RETRY_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0)


def _sid() -> str:
    """The Socket.IO session id of the event being handled.

    Flask-SocketIO sets it on the request; Flask's types do not know the attribute.
    """
    sid: str = request.sid  # type: ignore[attr-defined]
    return sid


Handler = Callable[..., dict]


def event(name: str, schema: type[BaseModel] | None) -> Callable[[Handler], Handler]:
    """Wrap a handler: count it, time it, validate its payload, turn refusals into acks.

    Whatever a client sends, the handler answers with an ack; nothing escapes to kill it.
    Arguments after the payload are refused as `invalid` (they were ignored: a client that
    put its data in the wrong place was told it succeeded).
    """

    def decorate(fn: Handler) -> Handler:
        @wraps(fn)
        def handler(self: ChatNamespace, data: Any = None, *_extra: Any) -> dict:
            metrics.events_received.labels(name).inc()
            metrics.handlers_in_progress.inc()
            self.events_running += 1  # a drain waits for these before it closes transports
            started = perf_counter()
            try:
                if not self.accepting_events:
                    raise Unavailable("this worker is shutting down; reconnect and try again")
                principal = self.principals.get(_sid())
                if principal is None:
                    raise Unauthorized("not connected")
                if _extra:  # docs/API.md: one payload object per event
                    raise Invalid(
                        f"one payload object per event; {len(_extra)} more "
                        f"argument{'s' if len(_extra) > 1 else ''} given"
                    )
                payload = schema.model_validate(data) if schema else None
                return fn(self, principal, payload)
            except ValidationError as exc:
                err: ChatError = invalid_from_validation(exc)
            except ChatError as exc:
                err = exc
            except Exception as exc:
                err = from_unexpected(exc)
                if err.code == "internal":
                    log.exception("unexpected error in %s handler", name)
                else:
                    log.warning("%s refused: %s (%s)", name, err.message, type(exc).__name__)
            finally:
                metrics.handler_seconds.labels(name).observe(perf_counter() - started)
                metrics.handlers_in_progress.dec()
                self.events_running -= 1
            db.session.rollback()
            metrics.events_refused.labels(name, err.code).inc()
            return error_ack(err)

        return handler

    return decorate


def _auth_refusal(exc: ValidationError) -> str:
    """What was wrong with a connect's `auth` (schemas.ConnectAuth refused it).

    No object or no token: required. A token of the wrong type or length is named as such
    (all of these were "auth.token is required", which sent a client holding a 3,000-character
    token looking for a missing one). A string no token can be (NUL, a lone surrogate):
    invalid, as a wrong token is.
    """
    errors = exc.errors(include_url=False, include_input=False)
    kinds = {err["type"] for err in errors if err["loc"] == ("token",)}
    if not kinds or kinds <= {"missing", "string_too_short"}:
        return "auth.token is required"
    if kinds & {"string_type", "string_too_long"}:
        return f"auth.token must be a string of at most {schemas.MAX_TOKEN_LENGTH} characters"
    return "invalid token"


class ChatNamespace(Namespace):
    """The default namespace. Connection state here is about this worker's own sockets."""

    namespace: str  # set by Namespace.__init__ (typeshed's stub of it leaves it out)

    def __init__(self, namespace: str, presence: Presence, rate_limiter: RateLimiter) -> None:
        super().__init__(namespace)
        # sid -> principal, indexed by token for the session check (realtime/sessions.py).
        self.principals = OpenSessions()
        self.presence = presence
        self.rate_limiter = rate_limiter
        # Event handlers running now, and whether new events are taken (a drain stops them).
        self.events_running = 0
        self.accepting_events = True

    def stop_accepting_events(self) -> None:
        """From now on every event is answered `unavailable` (the client retries elsewhere)."""
        self.accepting_events = False

    def trigger_event(self, event: str, *args: Any) -> Any:
        """Dispatch to `on_<event>`; an event no handler takes gets the error ack `invalid`.

        Flask-SocketIO ignores it, and python-socketio then acks with no arguments: a client
        would read that as success.
        """
        if not hasattr(self, f"on_{event}"):
            metrics.events_refused.labels("unknown", "invalid").inc()  # one label for all names
            return error_ack(Invalid("unknown event"))
        return super().trigger_event(event, *args)

    def on_connect(self, auth: Any = None) -> None:
        cfg = current_app.config
        try:
            token = schemas.ConnectAuth.model_validate(auth).token
            principal = authenticate_token(token, cfg["SECRET_KEY"], cfg["TOKEN_TTL_SECONDS"])
            # What follows waits on Redis: the session check's pooled connection goes back
            # first (as in messages.join).
            db.session.commit()
        except (ValidationError, Unauthorized) as exc:
            message = exc.message if isinstance(exc, ChatError) else _auth_refusal(exc)
            metrics.events_refused.labels("connect", "unauthorized").inc()
            raise ConnectionRefusedError(
                "unauthorized", {"code": "unauthorized", "message": message}
            ) from None
        except Exception as exc:  # the session check could not reach the database
            db.session.rollback()
            err = from_unexpected(exc)
            if err.code == "internal":
                log.exception("unexpected error in connect handler")
            metrics.events_refused.labels("connect", err.code).inc()
            raise ConnectionRefusedError(err.code, err.to_dict()["error"]) from None
        sid = _sid()
        if self.presence.connect(sid, principal.username) > cfg["MAX_CONNECTIONS_PER_USER"]:
            self.presence.disconnect(sid)
            metrics.events_refused.labels("connect", "rate_limited").inc()
            raise ConnectionRefusedError(
                "rate_limited", {"code": "rate_limited", "message": "too many connections"}
            )
        self.principals[sid] = principal
        metrics.connected_clients.inc()
        self._subscribe_personal(sid, principal)
        node = cfg["NODE_ID"]
        # Emitted after the CONNECT packet has gone out, so every client sees it as an event
        # of an established connection.
        socketio.start_background_task(
            socketio.emit, "session", {"user": principal.username, "node": node}, to=sid
        )
        # python-socketio keeps this environ while the socket lives; its events read little.
        keep_only_what_events_read(request.environ)

    def _subscribe_personal(self, sid: str, principal: Principal) -> None:
        """The user's channel, and the notify channel of every room the user belongs to.

        Runs after presence registered the socket: a membership added meanwhile either is
        committed before the query below or finds this sid in presence (notify.added).
        """
        join_room(notify.user_channel(principal.username))
        try:
            names = rooms.member_room_names(principal.id)
            db.session.commit()  # each join_room below may wait on Redis
        except Exception as exc:  # the store is down or busy: the user channel now, rooms later
            db.session.rollback()
            log.warning("room subscriptions of %s deferred: %s", principal.username, exc)
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            socketio.start_background_task(self._subscribe_rooms_later, app, sid, principal)
            return
        for name in names:
            join_room(notify.notify_channel(name, principal.username))

    def _subscribe_rooms_later(self, app: Any, sid: str, principal: Principal) -> None:
        """The notify channels a connect could not read (its pool was dry, the store down).

        Retried after about 1, 2, 4, 8 and 16 s while the socket is connected; a room the
        socket has joined live meanwhile is left out (its notices are for the user's other
        sockets). Checked just before each enter: an enter may wait on Redis, and a join that
        runs meanwhile leaves the notify channel itself only if it comes after.
        """
        server = socketio_server()
        for delay in SUBSCRIBE_RETRY_SECONDS:
            socketio.sleep(delay * random.uniform(0.5, 1.5))  # type: ignore[arg-type]
            if sid not in self.principals:
                return
            with app.app_context():
                try:
                    names = rooms.member_room_names(principal.id)
                    db.session.commit()
                except Exception as exc:
                    db.session.rollback()
                    log.warning("room subscriptions of %s: %s", principal.username, exc)
                    continue
            for name in names:
                if not server.manager.is_connected(sid, self.namespace):
                    return  # gone during the read or an enter: nothing to subscribe
                if publish.channel(name) not in server.rooms(sid, namespace=self.namespace):
                    server.enter_room(
                        sid,
                        notify.notify_channel(name, principal.username),
                        namespace=self.namespace,
                    )
            log.info("room subscriptions of %s made after %s s", principal.username, delay)
            return
        log.warning(
            "room subscriptions of %s given up: the socket misses room notices", principal.username
        )

    def on_disconnect(self, reason: Any = None) -> None:
        sid = _sid()
        # Presence first: it waits on Redis, and an event of this socket that runs meanwhile
        # (python-socketio still counts the socket as connected until this returns) must
        # still find its principal, or the client is told "not connected" for a message it
        # may rightly retry. Nothing waits between the pop and the end of the disconnect.
        try:
            self.presence.disconnect(sid)
        finally:
            if self.principals.pop(sid, None) is not None:
                metrics.connected_clients.dec()

    @event("join", schemas.JoinEvent)
    def on_join(self, principal: Principal, payload: schemas.JoinEvent) -> dict:
        sid = _sid()

        def enter(room: RoomRef) -> None:
            join_room(publish.channel(room.name))
            # Live now: the room's activity (`room` events) is for the user's other sockets.
            leave_room(notify.notify_channel(room.name, principal.username))
            self.presence.enter(sid, room.name)

        limiter = self.rate_limiter
        limiter.check(principal.username, rate_limit.JOINS)
        room, history, more, new_member = messages.join(
            principal,
            payload.room,
            payload.since,
            enter,
            before_create=lambda: limiter.check(principal.username, rate_limit.ROOM_CREATIONS),
        )
        if new_member:
            # The membership is stored and the socket has joined: a failure to tell the
            # user's other sockets must not make the ack say otherwise (a retry would find
            # the membership old and never tell them).
            try:
                change = rooms.Change(
                    room=rooms.view(principal, room.name), added=(principal.username,)
                )
                db.session.commit()  # notify.added waits on Redis
                notify.added(change, skip_sids=(sid,))
            except Exception as exc:
                db.session.rollback()
                log.warning(
                    "new member %s of %s not announced: %s", principal.username, room.name, exc
                )
        ack = {"ok": True, "room": room.name, "messages": history}
        if more:
            ack["more"] = True
        return ack

    @event("leave", schemas.LeaveEvent)
    def on_leave(self, principal: Principal, payload: schemas.LeaveEvent) -> dict:
        leave_room(publish.channel(payload.room))
        try:
            room = rooms.lookup(payload.room)
            name = room.name if room is not None else payload.room
            self.presence.leave(_sid(), name)
            if room is not None and rooms.is_member(principal.id, room):
                # Still a member: the socket hears of the room's activity again.
                join_room(notify.notify_channel(name, principal.username))
        except Exception as exc:  # the socket has left; only its notices wait for a reconnect
            db.session.rollback()
            self.presence.leave(_sid(), payload.room)
            log.warning("leave of %s: room notices not resumed: %s", payload.room, exc)
        return {"ok": True}

    @event("message", schemas.MessageEvent)
    def on_message(self, principal: Principal, payload: schemas.MessageEvent) -> dict:
        self.rate_limiter.check(principal.username)
        posted = messages.post_message(principal, payload.room, payload.text, payload.client_id)
        delivery.message_posted(posted)
        if posted.created:
            # Clients stop showing the author as typing when the message lands; the author's
            # next `typing` is news, not a repeat to coalesce.
            self.rate_limiter.clear(rate_limit.TYPING, _typing_key(principal, payload.room))
        return {"ok": True, "message": posted.message}

    @event("read", schemas.ReadEvent)
    def on_read(self, principal: Principal, payload: schemas.ReadEvent) -> dict:
        self.rate_limiter.check(principal.username, rate_limit.READS)
        name, last_read_seq, moved = rooms.mark_read(principal, payload.room, payload.seq)
        if moved:
            notify.read(principal.username, name, last_read_seq, skip_sid=_sid())
        return {"ok": True, "room": name, "last_read_seq": last_read_seq}

    @event("typing", schemas.TypingEvent)
    def on_typing(self, principal: Principal, payload: schemas.TypingEvent) -> dict:
        if publish.channel(payload.room) not in self._rooms_of(_sid()):
            raise Forbidden("join the room first")
        # Coalesced: one broadcast per user and room per TYPING_INTERVAL_SECONDS; the others
        # are acked and dropped (clients show a notice for a few seconds anyway).
        if self.rate_limiter.hit(rate_limit.TYPING, _typing_key(principal, payload.room)):
            publish.typing(payload.room, principal.username, skip_sid=_sid())
        return {"ok": True}

    def _rooms_of(self, sid: str) -> list[str]:
        """The Socket.IO rooms of one of this worker's sockets (in the event's namespace)."""
        return socketio_server().rooms(sid, namespace=self.namespace)


def _typing_key(principal: Principal, room: str) -> str:
    return f"{principal.username}|{room}"
