"""One pydantic schema per payload, shared by the REST API and the Socket.IO handlers."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypedDict

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

USERNAME_PATTERN = r"^[A-Za-z0-9_-]{3,32}$"
ROOM_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# Long enough for a paragraph and code snippets; short enough to keep a frame small.
MAX_TEXT_CHARS = 4000
# A client_id is a UUID or similar; 64 characters bounds what we index.
MAX_CLIENT_ID_CHARS = 64
# A room's member list comes from a person's form, not an import tool.
MAX_ROOM_MEMBERS = 500

# The largest value of a PostgreSQL `integer` column (seq, ids): past it a query would fail.
MAX_INT = 2**31 - 1


def storable(value: str) -> str:
    """Refuse text that no back-end can store: every string of every payload passes here.

    A lone surrogate ("\\ud83d", a JavaScript string cut inside an emoji) is valid JSON but
    has no UTF-8 encoding, so SQLite, psycopg2, argon2 and itsdangerous fail on it; NUL
    cannot be stored in PostgreSQL's text type. Both are `invalid`, whatever the field.
    """
    if value.isascii():  # the common case, checked in C without an encoding pass
        if "\x00" in value:
            raise ValueError("contains a NUL character")
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode text (a lone surrogate)") from None
    return value


def _query_int(value: Any) -> Any:
    """A query-string number: ASCII decimal digits only, at most 10 of them.

    int() and pydantic's lax mode also take " 5", "+5", "1_000", "5.0" and other scripts'
    digits ("\\u0663"); a client sending those has a bug worth seeing, so they are `invalid`.
    """
    if isinstance(value, str):
        if not _QUERY_INT.fullmatch(value):
            raise ValueError("must be a decimal number of at most 10 ASCII digits")
        return int(value)
    return value


_QUERY_INT = re.compile(r"[0-9]{1,10}")

# Every string field of every payload ends with the storable check: a Text, or a
# constrained str followed by STORABLE (constraints first, so the JSON schema shows them).
STORABLE = AfterValidator(storable)
Text = Annotated[str, STORABLE]
Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN), STORABLE]
RoomName = Annotated[str, StringConstraints(pattern=ROOM_PATTERN), STORABLE]
Seq = Annotated[int, Field(ge=0, le=MAX_INT)]
# The same numbers read from a query string (which arrives as text).
QUERY_INT = BeforeValidator(_query_int)
QuerySeq = Annotated[int, Field(ge=0, le=MAX_INT), QUERY_INT]


class Payload(BaseModel):
    """Strict about shape: unknown fields are refused and no type is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="after")
    def every_string_storable(self) -> Payload:
        # The net under the field types: a string field declared as plain `str` (or in a
        # list) is checked too, so no payload can carry text the database cannot store.
        for name, value in self:
            for item in value if isinstance(value, list) else (value,):
                if isinstance(item, str):
                    try:
                        storable(item)
                    except ValueError as exc:
                        raise ValueError(f"{name} {exc}") from None
        return self


class Credentials(Payload):
    username: Username
    password: Annotated[str, Field(min_length=8, max_length=256), STORABLE]


Password = Annotated[str, Field(min_length=8, max_length=256)]


class PasswordChange(Payload):
    current_password: Annotated[str, Field(min_length=1, max_length=256)]
    new_password: Password


class UserOut(BaseModel):
    id: int
    username: str


class TokenOut(BaseModel):
    token: str
    user: UserOut


class RoomCreate(Payload):
    name: RoomName
    private: bool = False
    members: Annotated[list[Username], Field(max_length=MAX_ROOM_MEMBERS)] = []


class RoomOut(BaseModel):
    """A room as the caller sees it (also the `room` Socket.IO event)."""

    name: str
    kind: Literal["public", "private", "dm"]
    private: bool
    last_seq: int
    # The caller's read position; null for a public room the caller is not a member of.
    last_read_seq: int | None
    unread: int  # last_seq - last_read_seq (0 when not a member)
    members: list[str] | None = None  # private rooms and DMs only


class RoomList(BaseModel):
    rooms: list[RoomOut]
    more: bool = False  # scope=public: more rooms after this page


class RoomsQuery(Payload):
    model_config = ConfigDict(extra="forbid", strict=False)  # query strings arrive as text

    scope: Literal["mine", "public"] = "mine"
    limit: Annotated[int, Field(ge=1, le=100), QUERY_INT] = 50
    after: RoomName | None = None


class UserSearchQuery(Payload):
    model_config = ConfigDict(extra="forbid", strict=False)

    q: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{0,32}$")] = ""


class UserName(BaseModel):
    username: str


class UserList(BaseModel):
    users: list[UserName]


class DmCreate(Payload):
    user: Username


class MemberAdd(Payload):
    user: Username


class ReadPosition(Payload):
    seq: Seq


class ReadOut(BaseModel):
    room: str
    last_read_seq: int


class MessageText(Payload):
    text: Text
    client_id: (
        Annotated[str, Field(min_length=1, max_length=MAX_CLIENT_ID_CHARS), STORABLE] | None
    ) = None

    @field_validator("text")
    @classmethod
    def trimmed_and_bounded(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("text is empty")
        if len(value) > MAX_TEXT_CHARS:
            raise ValueError(f"text is longer than {MAX_TEXT_CHARS} characters")
        return value


class MessageOut(BaseModel):
    id: int
    room: str
    seq: int
    user: str
    text: str
    created_at: str
    client_id: str | None


class MessagePayload(TypedDict):
    """A stored message as the server hands it out: MessageOut's fields, as a plain dict.

    What the domain returns (models.Message.to_dict), what is pushed to a room (the
    `message` event) and what REST and the Socket.IO ack return; built once per message and
    encoded as it is, so it is a dict rather than a model (test_schemas keeps the two equal).
    """

    id: int
    room: str
    seq: int  # the room's gapless counter, from 1
    user: str  # the author's username
    text: str
    created_at: str  # ISO 8601 in UTC with a "Z", e.g. "2026-01-02T03:04:05.678901Z"
    client_id: str | None  # the sender's idempotency key, if it gave one


class MessageList(BaseModel):
    messages: list[MessageOut]
    more: bool = False


class HistoryQuery(Payload):
    model_config = ConfigDict(extra="forbid", strict=False)  # query strings arrive as text

    after: QuerySeq | None = None
    before: QuerySeq | None = None
    limit: Annotated[int, Field(ge=1, le=100), QUERY_INT] = 50


class RoomPath(Payload):
    """The room named in a URL path: refused as `invalid` unless it could be a room's name."""

    room: RoomName


class MemberPath(Payload):
    """A room and a member named in a URL path: `invalid` unless each could be a name."""

    room: RoomName
    username: Username


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


# Socket.IO event payloads


class JoinEvent(Payload):
    room: RoomName
    since: Seq | None = None


class LeaveEvent(Payload):
    room: RoomName


class MessageEvent(MessageText):
    room: RoomName


class TypingEvent(Payload):
    room: RoomName


class ReadEvent(Payload):
    room: RoomName
    seq: Seq


# Our tokens are about 100 characters; the bound keeps HMAC work per refused connect small.
MAX_TOKEN_LENGTH = 1024


class ConnectAuth(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_LENGTH), STORABLE]
