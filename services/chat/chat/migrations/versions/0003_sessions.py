"""Ended sessions: users.tokens_valid_after ("log out everywhere") and revoked token ids.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("tokens_valid_after", sa.BigInteger(), server_default="0", nullable=False)
        )
    op.create_table(
        "token_revocations",
        sa.Column("jti", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("jti"),
    )
    with op.batch_alter_table("token_revocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_token_revocations_user_id"), ["user_id"])
        batch_op.create_index(batch_op.f("ix_token_revocations_expires_at"), ["expires_at"])


def downgrade():
    with op.batch_alter_table("token_revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_token_revocations_expires_at"))
        batch_op.drop_index(batch_op.f("ix_token_revocations_user_id"))
    op.drop_table("token_revocations")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("tokens_valid_after")
