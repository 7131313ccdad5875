"""The unread rule, written once.

A member's unread count is derived from their read position, never stored or incremented (DESIGN.md §5):
the chat's messages with ``seq`` after ``last_read_seq`` that someone else sent and that are not deleted.
Every answer that carries an ``unread_count`` (the chat list, ``POST /read``, ``GET /unread-counts``) must
use this module so the numbers agree. Core queries use ``unread_count``; queries written as SQL text (the
chat list's ``CHAT_ROWS``) embed ``unread_count_sql``, which is rendered from the same expression.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from fechatter_core.db.schema import messages

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _unread_messages(
    chat_id: sa.ColumnElement[int], user_id: sa.ColumnElement[int], last_read_seq: sa.ColumnElement[int]
) -> sa.ScalarSelect[int]:
    # Served by the (chat_id, seq) unique index: a range scan over the unread tail of one chat.
    msg = messages.alias("unread_msg")
    return (
        sa.select(sa.func.count())
        .select_from(msg)
        .where(
            msg.c.chat_id == chat_id,
            msg.c.seq > last_read_seq,
            msg.c.sender_id != user_id,
            msg.c.deleted_at.is_(None),
        )
        .scalar_subquery()
    )


def unread_count(member: sa.FromClause) -> sa.ScalarSelect[int]:
    """Unread messages for each row of ``member`` (``chat_members`` or an alias of it) in the enclosing
    query: a correlated scalar subquery, so one statement answers for any number of chats."""
    return _unread_messages(member.c.chat_id, member.c.user_id, member.c.last_read_seq)


def unread_count_sql(member_alias: str) -> str:
    """The same subquery as SQL text, for a query where ``member_alias`` names a ``chat_members`` row.

    A ``LEFT JOIN``-ed member that is NULL (a non-member looking at a public channel) counts 0."""
    if not _IDENTIFIER.fullmatch(member_alias):
        raise ValueError(f"not an SQL identifier: {member_alias!r}")
    # Bare column names (no table object) keep the alias out of the subquery's FROM, so it correlates
    # with the enclosing query; the expression has no bound values, so the text is complete.
    expression = _unread_messages(
        sa.literal_column(f"{member_alias}.chat_id"),
        sa.literal_column(f"{member_alias}.user_id"),
        sa.literal_column(f"{member_alias}.last_read_seq"),
    )
    return str(expression.compile(dialect=postgresql.dialect()))
