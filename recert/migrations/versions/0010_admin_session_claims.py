"""admin_session.email_verified and .groups: the sign-in claims each request re-checks

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sessions started before this knew neither claim: they fail the re-check and end on
    # their next request, so every admin signs in once more. The defaults are then dropped
    # so the columns match the models exactly.
    with op.batch_alter_table("admin_session", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("email_verified", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("groups", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table("admin_session", schema=None) as batch_op:
        batch_op.alter_column("email_verified", server_default=None)
        batch_op.alter_column("groups", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("admin_session", schema=None) as batch_op:
        batch_op.drop_column("groups")
        batch_op.drop_column("email_verified")
