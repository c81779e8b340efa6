"""Session clock: ended sessions stamped with a commit-ordered version, for the session check.

Each worker's session check then asks only for what changed since its previous look
(`users.ended_version > N`, `token_revocations.ended_version > N`) instead of for every open
token's user and id. Existing rows get version 0: a worker's first check looks at every open
token in full, so nothing ended before this migration is missed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        # Adding a column locks `users` against every read until this transaction commits:
        # give up (the worker does not start; start it again) rather than queue behind a
        # long transaction with every login and connect queued behind this one.
        op.execute("SET LOCAL lock_timeout = '10s'")
    clock = op.create_table(
        "session_clock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(clock, [{"id": 1, "version": 0}])
    for table in ("users", "token_revocations"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("ended_version", sa.BigInteger(), server_default="0", nullable=False)
            )
            batch_op.create_index(batch_op.f(f"ix_{table}_ended_version"), ["ended_version"])


def downgrade():
    for table in ("token_revocations", "users"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_ended_version"))
            batch_op.drop_column("ended_version")
    op.drop_table("session_clock")
