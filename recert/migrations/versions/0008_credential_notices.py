"""credential-expiry notice ledger

Revision ID: 0008
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credential_notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("credential_id", sa.String(), nullable=False),
        sa.Column("threshold_days", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("outbox_key", sa.String(), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["principal_id"], ["principal.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("principal_id", "credential_id", "threshold_days"),
    )
    with op.batch_alter_table("credential_notice", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credential_notice_outbox_key"), ["outbox_key"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("credential_notice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credential_notice_outbox_key"))
    op.drop_table("credential_notice")
