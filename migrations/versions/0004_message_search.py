"""Message search on PostgreSQL: trigram and full-text indexes on message content.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

``content gin_trgm_ops`` serves ``ILIKE '%text%'`` for words, prefixes, substrings and text without spaces
(Chinese, Japanese: the cluster's C.UTF-8 locale makes CJK characters word characters for pg_trgm).
``to_tsvector('english', content)`` adds stemmed matches ("studies" for "study").
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX messages_content_trgm_idx ON messages USING gin (content gin_trgm_ops)")
    op.execute(
        "CREATE INDEX messages_content_fts_idx ON messages"
        " USING gin (to_tsvector('english'::regconfig, content))"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS messages_content_fts_idx")
    op.execute("DROP INDEX IF EXISTS messages_content_trgm_idx")
