"""One pydantic schema per payload, shared by the REST API and the Socket.IO handlers."""

from __future__ import annotations

from typing import Annotated, Literal

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
    limit: Annotated[int, Field(ge=1, le=100)] = 50
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


class ReadEvent(Payload):
    room: RoomName
    seq: Seq


class ConnectAuth(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    token: Annotated[str, Field(min_length=1, max_length=1024)]
