"""Reply counts (migration 0009): every message's ``reply_count`` is the number of its replies that are not
deleted, whatever wrote them, including the messages written before the migration."""

from __future__ import annotations

import asyncpg
import pytest

from tests.integration.conftest import alembic


async def _chat(conn: asyncpg.Connection) -> tuple[int, int]:
    """A user and a chat of theirs, by plain SQL (no application code)."""
    user = await conn.fetchval(
        "INSERT INTO users (email, fullname) VALUES ('a@example.test', 'A') RETURNING id"
    )
    workspace = await conn.fetchval(
        "INSERT INTO workspaces (name, owner_id) VALUES ('W', $1) RETURNING id", user
    )
    chat = await conn.fetchval(
        "INSERT INTO chats (workspace_id, name, chat_type, owner_id)"
        " VALUES ($1, 'c', 'Group', $2) RETURNING id",
        workspace,
        user,
    )
    return user, chat


class Writer:
    def __init__(self, conn: asyncpg.Connection, user: int, chat: int) -> None:
        self.conn, self.user, self.chat, self.seq = conn, user, chat, 0

    async def message(self, reply_to: int | None = None, *, deleted: bool = False) -> int:
        self.seq += 1
        return await self.conn.fetchval(
            "INSERT INTO messages (chat_id, seq, sender_id, content, reply_to, deleted_at)"
            " VALUES ($1, $2, $3, 'x', $4, CASE WHEN $5 THEN now() END) RETURNING id",
            self.chat,
            self.seq,
            self.user,
            reply_to,
            deleted,
        )

    async def delete(self, message_id: int) -> None:
        await self.conn.execute(
            "UPDATE messages SET content = '', deleted_at = COALESCE(deleted_at, now()) WHERE id = $1",
            message_id,
        )

    async def counts(self, *ids: int) -> list[int]:
        rows = await self.conn.fetch(
            "SELECT id, reply_count FROM messages WHERE id = ANY($1::bigint[])", list(ids)
        )
        by_id = {r["id"]: r["reply_count"] for r in rows}
        return [by_id[i] for i in ids]


async def test_upgrade_counts_the_replies_written_before_it(
    fresh_database: str, connection: asyncpg.Connection
) -> None:
    before = alembic(fresh_database, "upgrade", "0008")
    assert before.returncode == 0, before.stdout + before.stderr
    w = Writer(connection, *await _chat(connection))
    parent, lonely = await w.message(), await w.message()
    first = await w.message(parent)
    await w.message(parent)
    await w.message(parent, deleted=True)
    await w.message(first)

    up = alembic(fresh_database, "upgrade", "0009")
    assert up.returncode == 0, up.stdout + up.stderr
    assert await w.counts(parent, lonely, first) == [2, 0, 1]


async def test_inserts_and_deletes_keep_the_count(
    fresh_database: str, connection: asyncpg.Connection
) -> None:
    up = alembic(fresh_database, "upgrade", "head")
    assert up.returncode == 0, up.stdout + up.stderr
    w = Writer(connection, *await _chat(connection))
    parent = await w.message()
    replies = [await w.message(parent) for _ in range(3)]
    await w.message(parent, deleted=True)  # written deleted: never counted
    assert await w.counts(parent) == [3]

    await w.delete(replies[0])
    await w.delete(replies[0])  # deleted again: no change
    assert await w.counts(parent) == [2]
    # Other changes to a reply or to the parent leave the count alone.
    await connection.execute(
        "UPDATE messages SET content = 'edited', edited_at = now() WHERE id = $1", replies[1]
    )
    await connection.execute("UPDATE messages SET content = 'edited' WHERE id = $1", parent)
    assert await w.counts(parent) == [2]

    # An insert that fails (a seq already taken) counts nothing.
    with pytest.raises(asyncpg.UniqueViolationError):
        await connection.execute(
            "INSERT INTO messages (chat_id, seq, sender_id, content, reply_to) VALUES ($1, 1, $2, 'dup', $3)",
            w.chat,
            w.user,
            parent,
        )
    # Nor does one rolled back.
    tx = connection.transaction()
    await tx.start()
    await w.message(parent)
    assert await w.counts(parent) == [3]
    await tx.rollback()
    assert await w.counts(parent) == [2]
