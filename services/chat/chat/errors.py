"""One error shape for REST responses and Socket.IO acks."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class ChatError(Exception):
    """A refusal the client can act on: a stable code, a human message, an HTTP status."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class Invalid(ChatError):
    code, status = "invalid", 400


class Unauthorized(ChatError):
    code, status = "unauthorized", 401


class Forbidden(ChatError):
    code, status = "forbidden", 403


class NotFound(ChatError):
    code, status = "not_found", 404


class Conflict(ChatError):
    code, status = "conflict", 409


class RateLimited(ChatError):
    code, status = "rate_limited", 429

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        # Whole seconds until a retry can succeed: REST sends it as `Retry-After`.
        self.retry_after = None if retry_after is None else max(1, int(retry_after + 0.999))


class Unavailable(ChatError):
    code, status = "unavailable", 503


def invalid_from_validation(exc: ValidationError) -> Invalid:
    """Turn pydantic's error list into one readable sentence."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    return Invalid("; ".join(parts) or "invalid payload")


def from_unexpected(exc: Exception) -> ChatError:
    """The refusal for an exception no handler anticipated.

    A lost database connection is the client's business (retry later with the same
    client_id), not a bug: it gets `unavailable`. Input the database refused as data (a
    value it cannot encode or hold) is `invalid`: the shared schemas refuse such input first
    (schemas.storable), this is the net under them. Anything else is `internal`.
    """
    from sqlalchemy.exc import DataError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    # PoolTimeout: every pooled connection is busy (held by calls to a hung database).
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return Unavailable("the message store is unavailable; nothing was stored, try again")
    if isinstance(exc, UnicodeError | DataError):
        return Invalid("the input cannot be stored (not valid text, or out of range)")
    return ChatError("internal error", code="internal", status=500)


def error_ack(err: ChatError) -> dict[str, Any]:
    """The Socket.IO ack for a refused event."""
    return {"ok": False, **err.to_dict()}
