"""Messages say whether they may have files, reactions or mentions, so reads skip needless lookups.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Every read that returns messages decorates each one with its files, reactions and mentions: three index
lookups per message, most of which find nothing (a history page of 50 plain messages spent more time on
them than on the messages). ``has_files``, ``has_reactions`` and ``has_mentions`` are false only when the
message has no such row, and the reads look up what the flags allow. The flags are kept by triggers on
the three tables, so no write path can forget them: an insert sets the message's flag in the same
transaction. They are never cleared (a flag over rows since removed costs one lookup that finds nothing),
so concurrent writers only ever move a flag from false to true. The triggers watch inserts: a decoration row
never moves to another message (no code updates ``message_id``), and a data-only restore with triggers
disabled must come from a dump that has the flags. A send that knows it carries files or
mentions sets the flags in its own insert, and the trigger then changes nothing.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# (decoration table, flag column)
_FLAGS = (
    ("message_files", "has_files"),
    ("message_reactions", "has_reactions"),
    ("message_mentions", "has_mentions"),
)


def _function(table: str) -> str:
    return f"fechatter_flag_{table}"


def upgrade() -> None:
    # A constant default: PostgreSQL adds the columns without rewriting the table.
    op.execute(
        "ALTER TABLE messages"
        " ADD COLUMN has_files boolean NOT NULL DEFAULT false,"
        " ADD COLUMN has_reactions boolean NOT NULL DEFAULT false,"
        " ADD COLUMN has_mentions boolean NOT NULL DEFAULT false"
    )
    # Table and column names below come from _FLAGS, never from input. The triggers come first, so that the
    # backfill does not depend on the table lock keeping inserts out in between.
    for table, flag in _FLAGS:
        # One UPDATE per inserting statement (a send attaching five files sets the flag once); rows whose
        # flag is already set are not written again.
        op.execute(
            f"""
            CREATE FUNCTION {_function(table)}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE messages m SET {flag} = true
                FROM (SELECT DISTINCT message_id FROM new_rows) n
                WHERE m.id = n.message_id AND NOT m.{flag};
                RETURN NULL;
            END
            $$
            """  # noqa: S608
        )
        op.execute(
            f"CREATE TRIGGER {table}_flag AFTER INSERT ON {table}"
            f" REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {_function(table)}()"
        )
    # The messages decorated before: each written once, whatever it carries.
    exists = {
        flag: f"EXISTS (SELECT 1 FROM {table} x WHERE x.message_id = m.id)"  # noqa: S608
        for table, flag in _FLAGS
    }
    op.execute(
        "UPDATE messages m SET "  # noqa: S608
        + ", ".join(f"{flag} = {test}" for flag, test in exists.items())
        + " WHERE "
        + " OR ".join(exists.values())
    )


def downgrade() -> None:
    for table, _ in _FLAGS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_flag ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {_function(table)}()")
    op.execute(
        "ALTER TABLE messages DROP COLUMN IF EXISTS has_files,"
        " DROP COLUMN IF EXISTS has_reactions, DROP COLUMN IF EXISTS has_mentions"
    )
