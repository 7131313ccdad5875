"""Reactions, pins, mentions and files.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_now = sa.text("now()")


def _fk(table: str, *, ondelete: str | None = "CASCADE") -> sa.ForeignKey:
    return sa.ForeignKey(f"{table}.id", ondelete=ondelete)


def upgrade() -> None:
    op.create_table(
        "message_reactions",
        sa.Column("message_id", sa.BigInteger, _fk("messages"), primary_key=True),
        sa.Column("user_id", sa.BigInteger, _fk("users"), primary_key=True),
        sa.Column("emoji", sa.Text, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.CheckConstraint("char_length(emoji) BETWEEN 1 AND 64", name="message_reactions_emoji_length"),
    )
    op.create_table(
        "message_pins",
        sa.Column("message_id", sa.BigInteger, _fk("messages"), primary_key=True),
        sa.Column("chat_id", sa.BigInteger, _fk("chats"), nullable=False),
        sa.Column("pinned_by", sa.BigInteger, _fk("users"), nullable=False),
        sa.Column("pinned_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    )
    op.create_index("message_pins_chat_idx", "message_pins", ["chat_id", "pinned_at"])
    op.create_table(
        "message_mentions",
        sa.Column("message_id", sa.BigInteger, _fk("messages"), primary_key=True),
        sa.Column("user_id", sa.BigInteger, _fk("users"), primary_key=True),
        sa.Column("chat_id", sa.BigInteger, _fk("chats"), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("mention_type", sa.Text, nullable=False, server_default="user"),
        sa.CheckConstraint("mention_type IN ('user', 'everyone', 'here')", name="message_mentions_type"),
    )
    op.create_index("message_mentions_user_idx", "message_mentions", ["user_id", "chat_id", "seq"])
    op.create_table(
        "files",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, _fk("workspaces"), nullable=False),
        sa.Column("uploader_id", sa.BigInteger, _fk("users"), nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mime_type", sa.Text, nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("thumbnail_sha256", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.CheckConstraint("size >= 0", name="files_size"),
    )
    op.create_index("files_uploader_idx", "files", ["uploader_id"])
    op.create_index("files_sha256_idx", "files", ["sha256"])
    op.create_table(
        "message_files",
        sa.Column("message_id", sa.BigInteger, _fk("messages"), primary_key=True),
        sa.Column("file_id", sa.BigInteger, _fk("files"), primary_key=True),
        sa.Column("position", sa.SmallInteger, nullable=False, server_default="0"),
    )
    op.create_index("message_files_file_idx", "message_files", ["file_id"])


def downgrade() -> None:
    op.drop_index("message_files_file_idx", "message_files")
    op.drop_table("message_files")
    op.drop_index("files_sha256_idx", "files")
    op.drop_index("files_uploader_idx", "files")
    op.drop_table("files")
    op.drop_index("message_mentions_user_idx", "message_mentions")
    op.drop_table("message_mentions")
    op.drop_index("message_pins_chat_idx", "message_pins")
    op.drop_table("message_pins")
    op.drop_table("message_reactions")
