"""Storage: typed SQLAlchemy models. rooms.last_seq hands out each room's gapless seq."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import Model
from .schemas import MessagePayload


def utcnow() -> datetime:
    return datetime.now(UTC)


class User(Model):
    __tablename__ = "users"
    __table_args__ = (
        # One identity whatever the case: `Alice` and `alice` are the same user (0002).
        Index("uq_users_username_lower", text("lower(username)"), unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Tokens issued at or before this instant (ms since the epoch) are refused: "log out
    # everywhere" and a password change move it to now.
    tokens_valid_after: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The session clock's value (SessionClock) when tokens_valid_after last moved: the
    # session check asks only for users changed since its previous look (0004).
    ended_version: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", index=True
    )


class TokenRevocation(Model):
    """One ended token ("log out" on one device), kept until the token would have expired."""

    __tablename__ = "token_revocations"

    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # ms since the epoch; rows past it are deleted (the token is refused as expired anyway).
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    # The session clock's value when the token was revoked (0004).
    ended_version: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", index=True
    )


class SessionClock(Model):
    """One row: a counter every transaction that ends sessions moves on by one (0004).

    Such a transaction increments it first, so it holds the row's lock until it commits:
    versions are handed out in commit order, and once a reader sees version N every change
    stamped N or lower is committed and visible. A change stamped with the version it got
    (users/token_revocations.ended_version) is therefore found by asking for `> N` later,
    with no clock skew or transaction-length margin. Nothing else may write the two tables'
    session columns without ticking it (accounts._tick).
    """

    __tablename__ = "session_clock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


ROOM_KINDS = ("public", "private", "dm")


class Room(Model):
    __tablename__ = "rooms"
    __table_args__ = (
        # Room names are one identity whatever the case too; the room keeps the spelling it
        # was created with (0002).
        Index("uq_rooms_name_lower", text("lower(name)"), unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    # "public", "private" or "dm"; a dm is private too (`private` stays for old readers).
    kind: Mapped[str] = mapped_column(String(8), default="public")
    # A DM's pair "<lower user id>:<higher user id>": unique, so two workers creating the same
    # DM at once end with one room (the loser's INSERT fails and it reads the winner's).
    dm_key: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    # The seq of the newest message; incremented in the transaction that stores the next one.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Membership(Model):
    """A user's rooms: who may enter a private room or DM, which public rooms one joined,
    and how far the user has read in each (seq of the last message read)."""

    __tablename__ = "memberships"

    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    # Never moves back. Unread = rooms.last_seq - last_read_seq: seq has no gaps, so the
    # room list needs no COUNT over messages.
    last_read_seq: Mapped[int] = mapped_column(Integer, default=0)


class Message(Model):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("room_id", "seq", name="uq_messages_room_seq"),
        # Makes a retried send with the same client_id find the stored message, never a twin.
        UniqueConstraint("user_id", "client_id", name="uq_messages_user_client_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    seq: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The author's name, copied at write time: usernames never change, and history reads
    # then need no join per message.
    username: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def to_dict(self, room_name: str) -> MessagePayload:
        """The public message object of the API contract."""
        created = self.created_at
        if created.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
            created = created.replace(tzinfo=UTC)
        return {
            "id": self.id,
            "room": room_name,
            "seq": self.seq,
            "user": self.username,
            "text": self.text,
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "client_id": self.client_id,
        }
