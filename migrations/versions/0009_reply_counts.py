"""Messages count their replies, so any client can show "3 replies" without fetching them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

``reply_count`` is the number of messages replying to this one (``reply_to``) that are not deleted. It is
kept by triggers on messages, so no write path can forget it: a reply inserted adds one to its parent in the
same statement, and a reply soft-deleted (``deleted_at`` set) takes one away. A send without ``reply_to``
fires nothing (the triggers' WHEN clauses rule it out before any function runs). A parent removed outright
(its chat deleted) takes its count with it; replies keep ``reply_to`` NULL from the foreign key and count
for nothing. Updating the parent's count changes no indexed column, so it can be a HOT update, and it
recomputes none of the stored search columns (PostgreSQL recomputes only those whose inputs the update
sets; theirs is ``content``).
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.execute("ALTER TABLE messages ADD COLUMN reply_count integer NOT NULL DEFAULT 0")
    op.execute(
        """
        CREATE FUNCTION fechatter_count_reply() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                UPDATE messages SET reply_count = reply_count + 1 WHERE id = NEW.reply_to;
            ELSE
                UPDATE messages SET reply_count = reply_count - 1 WHERE id = NEW.reply_to AND reply_count > 0;
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    # The triggers come before the backfill, so that no reply written in between is missed: the backfill
    # below then sets every count from scratch, under the lock the ALTER TABLE took.
    op.execute(
        "CREATE TRIGGER messages_reply_counted AFTER INSERT ON messages FOR EACH ROW"
        " WHEN (NEW.reply_to IS NOT NULL AND NEW.deleted_at IS NULL)"
        " EXECUTE FUNCTION fechatter_count_reply()"
    )
    op.execute(
        "CREATE TRIGGER messages_reply_uncounted AFTER UPDATE OF deleted_at ON messages FOR EACH ROW"
        " WHEN (NEW.reply_to IS NOT NULL AND OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL)"
        " EXECUTE FUNCTION fechatter_count_reply()"
    )
    op.execute(
        """
        UPDATE messages m SET reply_count = r.n
        FROM (SELECT reply_to, count(*) AS n FROM messages
              WHERE reply_to IS NOT NULL AND deleted_at IS NULL GROUP BY reply_to) r
        WHERE m.id = r.reply_to
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS messages_reply_uncounted ON messages")
    op.execute("DROP TRIGGER IF EXISTS messages_reply_counted ON messages")
    op.execute("DROP FUNCTION IF EXISTS fechatter_count_reply()")
    op.execute("ALTER TABLE messages DROP COLUMN IF EXISTS reply_count")
