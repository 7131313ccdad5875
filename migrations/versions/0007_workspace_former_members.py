"""People removed from a workspace, or who left it, keep a name on their past messages.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Removing someone from a workspace deletes their membership, so ``GET /api/users`` no longer lists them,
yet their messages stay in the chats. ``workspace_former_members`` records who left and who removed them,
for the names of those messages (``GET /api/workspace/former-members``). A row goes when the person joins
the workspace again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspace_former_members",
        sa.Column(
            "workspace_id",
            sa.BigInteger,
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("removed_by", sa.BigInteger, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    )


def downgrade() -> None:
    op.drop_table("workspace_former_members")
