"""One pydantic schema per payload, shared by the REST API and the Socket.IO handlers."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

USERNAME_PATTERN = r"^[A-Za-z0-9_-]{3,32}$"
ROOM_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# Long enough for a paragraph and code snippets; short enough to keep a frame small.
MAX_TEXT_CHARS = 4000
# A client_id is a UUID or similar; 64 characters bounds what we index.
MAX_CLIENT_ID_CHARS = 64
# A room's member list comes from a person's form, not an import tool.
MAX_ROOM_MEMBERS = 500

Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN)]
RoomName = Annotated[str, StringConstraints(pattern=ROOM_PATTERN)]
Seq = Annotated[int, Field(ge=0, le=2**31 - 1)]


class Payload(BaseModel):
    """Strict about shape: unknown fields are refused and no type is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Credentials(Payload):
    username: Username
    password: Annotated[str, Field(min_length=8, max_length=256)]


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
    name: str
    private: bool
    last_seq: int
    members: list[str] | None = None


class RoomList(BaseModel):
    rooms: list[RoomOut]


class MessageText(Payload):
    text: str
    client_id: Annotated[str, Field(min_length=1, max_length=MAX_CLIENT_ID_CHARS)] | None = None

    @field_validator("text")
    @classmethod
    def trimmed_and_bounded(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("text is empty")
        if len(value) > MAX_TEXT_CHARS:
            raise ValueError(f"text is longer than {MAX_TEXT_CHARS} characters")
        return value

    @field_validator("text", "client_id")
    @classmethod
    def no_nul(cls, value: str | None) -> str | None:
        # PostgreSQL's text type cannot hold NUL (the INSERT fails); refused on every back-end.
        if value is not None and "\x00" in value:
            raise ValueError("contains a NUL character")
        return value


class MessageOut(BaseModel):
    id: int
    room: str
    seq: int
    user: str
    text: str
    created_at: str
    client_id: str | None


class MessageList(BaseModel):
    messages: list[MessageOut]
    more: bool = False


class HistoryQuery(Payload):
    model_config = ConfigDict(extra="forbid", strict=False)  # query strings arrive as text

    after: Seq | None = None
    before: Seq | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50


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


class ConnectAuth(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    token: Annotated[str, Field(min_length=1, max_length=1024)]
