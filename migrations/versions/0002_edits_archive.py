"""Message edit history and chat archiving.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_edits",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "message_id", sa.BigInteger, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False
        ),
        # The content as it was before this edit; the current content stays in messages.
        sa.Column("previous_content", sa.Text, nullable=False),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    )
    op.create_index("message_edits_message_idx", "message_edits", ["message_id", "id"])
    op.add_column("chats", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "messages_reply_to_idx", "messages", ["reply_to"], postgresql_where=sa.text("reply_to IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("messages_reply_to_idx", "messages")
    op.drop_column("chats", "archived_at")
    op.drop_index("message_edits_message_idx", "message_edits")
    op.drop_table("message_edits")
