"""Read the database straight from PostgreSQL, to check that a refused request changed nothing."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.stackutil import RunningStack

# Rows of one chat that the message extras (reactions, pins, mentions, archive) can change.
_QUERIES = {
    "reactions": "SELECT r.message_id, r.user_id, r.emoji FROM message_reactions r "
    "JOIN messages m ON m.id = r.message_id WHERE m.chat_id = $1 ORDER BY 1, 2, 3",
    "pins": "SELECT message_id, pinned_by, pinned_at FROM message_pins WHERE chat_id = $1 ORDER BY 1",
    "mentions": "SELECT message_id, user_id, mention_type FROM message_mentions "
    "WHERE chat_id = $1 ORDER BY 1, 2",
    "messages": "SELECT id, seq, content, edited_at, deleted_at FROM messages "
    "WHERE chat_id = $1 ORDER BY seq",
    "chat": "SELECT archived_at, last_seq, name FROM chats WHERE id = $1",
    "members": "SELECT user_id, role, last_read_seq FROM chat_members WHERE chat_id = $1 ORDER BY 1",
}


async def chat_state(stack: RunningStack, chat_id: int) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(stack.database_url())
    try:
        return {
            name: [tuple(row) for row in await conn.fetch(query, chat_id)] for name, query in _QUERIES.items()
        }
    finally:
        await conn.close()


async def execute(stack: RunningStack, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Set up bulk data straight in the database (what would take hundreds of requests), returning rows."""
    conn = await asyncpg.connect(stack.database_url())
    try:
        return [tuple(row) for row in await conn.fetch(sql, *args)]
    finally:
        await conn.close()
