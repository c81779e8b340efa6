"""Direct messages, read positions, room kinds; names are one identity whatever the case.

- `rooms.kind` ("public", "private", "dm"; existing private rooms become "private") and
  `rooms.dm_key` (a DM's pair "<lower user id>:<higher user id>", unique: one DM per pair,
  enforced by the database even when two workers create it at the same moment).
- `memberships.last_read_seq`: how far the member has read. Existing memberships start read
  up to their room's `last_seq` (nothing is unread after the upgrade).
- Public rooms now have members too (`GET /api/rooms` lists the caller's rooms only): every
  user who has posted in a public room becomes its member, read up to its `last_seq`.
- Usernames and room names become unique case-insensitively (unique indexes on `lower(...)`).
  Rows that already differ only by case: the oldest (lowest id) keeps its name; each later one
  is renamed to `<name>-<id>` (cut so it fits: 32 characters for users, 64 for rooms). A
  renamed user's messages carry the new name; a renamed room keeps its messages and seqs.
- Room names starting with `dm-` are reserved for DMs from now on (`dm-<id>-<id>`); an
  existing room whose name starts with `dm-` (any case) is renamed `room-<name>` (cut to 64).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

users = sa.table("users", sa.column("id", sa.Integer), sa.column("username", sa.String))
rooms = sa.table(
    "rooms",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("private", sa.Boolean),
    sa.column("kind", sa.String),
    sa.column("last_seq", sa.Integer),
)
memberships = sa.table(
    "memberships",
    sa.column("room_id", sa.Integer),
    sa.column("user_id", sa.Integer),
    sa.column("last_read_seq", sa.Integer),
)
messages = sa.table(
    "messages",
    sa.column("room_id", sa.Integer),
    sa.column("user_id", sa.Integer),
    sa.column("username", sa.String),
)


def _suffixed(name: str, suffix: str, limit: int) -> str:
    return name[: limit - len(suffix)] + suffix


def _rename_case_twins(bind, table, column: str, limit: int) -> dict[int, str]:
    """Rename every row whose name equals an older row's but for case; {id: new name}."""
    col = table.c[column]
    rows = bind.execute(sa.select(table.c.id, col).order_by(table.c.id)).all()
    taken = {name.lower() for _, name in rows}
    seen: set[str] = set()
    renamed: dict[int, str] = {}
    for row_id, name in rows:
        key = name.lower()
        if key not in seen:
            seen.add(key)
            continue
        new = _suffixed(name, f"-{row_id}", limit)
        n = 2
        while new.lower() in taken:  # `<name>-<id>` itself taken: add a counter
            new = _suffixed(name, f"-{row_id}-{n}", limit)
            n += 1
        taken.add(new.lower())
        renamed[row_id] = new
        bind.execute(table.update().where(table.c.id == row_id).values({column: new}))
    return renamed


def upgrade():
    bind = op.get_bind()

    for user_id, new in _rename_case_twins(bind, users, "username", 32).items():
        bind.execute(messages.update().where(messages.c.user_id == user_id).values(username=new))
    _rename_case_twins(bind, rooms, "name", 64)
    taken = {n.lower() for n in bind.execute(sa.select(rooms.c.name)).scalars()}
    for room_id, name in bind.execute(
        sa.select(rooms.c.id, rooms.c.name).where(sa.func.lower(rooms.c.name).like("dm-%"))
    ).all():
        new = _suffixed(f"room-{name}", "", 64)
        if new.lower() in taken:
            new = _suffixed(f"room-{name}", f"-{room_id}", 64)
        taken.add(new.lower())
        bind.execute(rooms.update().where(rooms.c.id == room_id).values(name=new))

    with op.batch_alter_table("rooms") as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=8), nullable=False, server_default="public")
        )
        batch_op.add_column(sa.Column("dm_key", sa.String(length=32), nullable=True))
        batch_op.create_index("uq_rooms_dm_key", ["dm_key"], unique=True)
    with op.batch_alter_table("memberships") as batch_op:
        batch_op.add_column(
            sa.Column("last_read_seq", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)
    op.create_index("uq_rooms_name_lower", "rooms", [sa.text("lower(name)")], unique=True)

    bind.execute(rooms.update().where(rooms.c.private.is_(True)).values(kind="private"))
    room_seq = (
        sa.select(rooms.c.last_seq).where(rooms.c.id == memberships.c.room_id).scalar_subquery()
    )
    bind.execute(memberships.update().values(last_read_seq=room_seq))
    posters = (
        sa.select(messages.c.room_id, messages.c.user_id, rooms.c.last_seq)
        .distinct()
        .join(rooms, rooms.c.id == messages.c.room_id)
        .where(rooms.c.private.is_(False))
    )
    bind.execute(memberships.insert().from_select(["room_id", "user_id", "last_read_seq"], posters))


def downgrade():
    op.drop_index("uq_rooms_name_lower", table_name="rooms")
    op.drop_index("uq_users_username_lower", table_name="users")
    with op.batch_alter_table("memberships") as batch_op:
        batch_op.drop_column("last_read_seq")
    with op.batch_alter_table("rooms") as batch_op:
        batch_op.drop_index("uq_rooms_dm_key")
        batch_op.drop_column("dm_key")
        batch_op.drop_column("kind")
