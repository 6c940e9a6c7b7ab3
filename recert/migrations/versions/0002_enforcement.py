"""enforcement actions as evidence, job leases, frozen campaign completion

Revision ID: 0002
Revises: 0007
Create Date: 2026-12-04

`enforcement_action` existed unused since 0001 (no code wrote a row), so it is recreated
in its full shape rather than altered column by column.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0007"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("enforcement_action", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enforcement_action_principal_id"))
    op.drop_table("enforcement_action")
    op.create_table(
        "enforcement_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("review_item_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=True),
        sa.Column("grant_id", sa.String(), nullable=True),
        sa.Column("permission", sa.String(), nullable=True),
        sa.Column("consenting_user", sa.String(), nullable=True),
        sa.Column("reversible", sa.Boolean(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _WHEN, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("performed_by", sa.String(), nullable=False),
        sa.Column("performed_at", _WHEN, nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("mailed_at", _WHEN, nullable=True),
        sa.Column("reverses_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.ForeignKeyConstraint(["principal_id"], ["principal.id"]),
        sa.ForeignKeyConstraint(["review_item_id"], ["review_item.id"]),
        sa.ForeignKeyConstraint(["reverses_id"], ["enforcement_action.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key", name="uq_enforcement_action_idempotency_key"),
    )
    with op.batch_alter_table("enforcement_action", schema=None) as batch_op:
        for column in ("principal_id", "status", "tenant"):
            batch_op.create_index(
                batch_op.f(f"ix_enforcement_action_{column}"), [column], unique=False
            )

    op.create_table(
        "job_lock",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("token", sa.String(), nullable=False),
        sa.Column("holder", sa.JSON(), nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )

    # Existing campaigns start with no frozen figures; the default is then dropped so the
    # column matches the model exactly.
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("completion", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.alter_column("completion", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_column("completion")
    op.drop_table("job_lock")
    with op.batch_alter_table("enforcement_action", schema=None) as batch_op:
        for column in ("principal_id", "status", "tenant"):
            batch_op.drop_index(batch_op.f(f"ix_enforcement_action_{column}"))
    op.drop_table("enforcement_action")
    op.create_table(
        "enforcement_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("review_item_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("performed_by", sa.String(), nullable=False),
        sa.Column("performed_at", _WHEN, nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["principal_id"], ["principal.id"]),
        sa.ForeignKeyConstraint(["review_item_id"], ["review_item.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("enforcement_action", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_enforcement_action_principal_id"), ["principal_id"], unique=False
        )
