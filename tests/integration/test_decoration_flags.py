"""The decoration flags of messages (migration 0006): false only when the message has no file, reaction or
mention row, whoever wrote the row and whenever. Reads skip the lookups a false flag rules out, so a flag
left false over a row would hide a reaction, a file or a mention from every reader."""

from __future__ import annotations

import asyncpg

from tests.integration.conftest import alembic

_FLAGS = "SELECT has_files, has_reactions, has_mentions FROM messages WHERE id = $1"


async def _seed(conn: asyncpg.Connection) -> dict[str, int]:
    """A workspace with two users, a chat and four messages, by plain SQL (no application code)."""
    ids: dict[str, int] = {}
    ids["alice"] = await conn.fetchval(
        "INSERT INTO users (email, fullname) VALUES ('alice@example.test', 'Alice') RETURNING id"
    )
    ids["bob"] = await conn.fetchval(
        "INSERT INTO users (email, fullname) VALUES ('bob@example.test', 'Bob') RETURNING id"
    )
    ids["workspace"] = await conn.fetchval(
        "INSERT INTO workspaces (name, owner_id) VALUES ('Acme', $1) RETURNING id", ids["alice"]
    )
    ids["chat"] = await conn.fetchval(
        "INSERT INTO chats (workspace_id, name, chat_type, owner_id, last_seq)"
        " VALUES ($1, 'general', 'Group', $2, 4) RETURNING id",
        ids["workspace"],
        ids["alice"],
    )
    for seq, name in enumerate(("plain", "with_file", "with_reaction", "with_mention"), start=1):
        ids[name] = await conn.fetchval(
            "INSERT INTO messages (chat_id, seq, sender_id, content) VALUES ($1, $2, $3, $4) RETURNING id",
            ids["chat"],
            seq,
            ids["alice"],
            f"message {name}",
        )
    ids["file"] = await conn.fetchval(
        "INSERT INTO files (workspace_id, uploader_id, sha256, size, mime_type, filename)"
        " VALUES ($1, $2, 'ab', 2, 'text/plain', 'a.txt') RETURNING id",
        ids["workspace"],
        ids["alice"],
    )
    return ids


async def _decorate(conn: asyncpg.Connection, ids: dict[str, int]) -> None:
    await conn.execute(
        "INSERT INTO message_files (message_id, file_id) VALUES ($1, $2)", ids["with_file"], ids["file"]
    )
    await conn.execute(
        "INSERT INTO message_reactions (message_id, user_id, emoji) VALUES ($1, $2, '👍')",
        ids["with_reaction"],
        ids["bob"],
    )
    await conn.execute(
        "INSERT INTO message_mentions (message_id, user_id, chat_id, seq) VALUES ($1, $2, $3, 4)",
        ids["with_mention"],
        ids["bob"],
        ids["chat"],
    )


async def _flags(conn: asyncpg.Connection, ids: dict[str, int]) -> dict[str, tuple[bool, bool, bool]]:
    names = ("plain", "with_file", "with_reaction", "with_mention")
    return {name: tuple(await conn.fetchrow(_FLAGS, ids[name])) for name in names}  # type: ignore[misc]


EXPECTED = {
    "plain": (False, False, False),
    "with_file": (True, False, False),
    "with_reaction": (False, True, False),
    "with_mention": (False, False, True),
}


async def test_upgrade_flags_the_messages_decorated_before_it(
    fresh_database: str,
    connection: asyncpg.Connection,
) -> None:
    before = alembic(fresh_database, "upgrade", "0005")
    assert before.returncode == 0, before.stdout + before.stderr
    ids = await _seed(connection)
    await _decorate(connection, ids)

    up = alembic(fresh_database, "upgrade", "0006")
    assert up.returncode == 0, up.stdout + up.stderr
    assert await _flags(connection, ids) == EXPECTED


async def test_every_insert_of_a_decoration_sets_its_flag(
    fresh_database: str,
    connection: asyncpg.Connection,
) -> None:
    up = alembic(fresh_database, "upgrade", "head")
    assert up.returncode == 0, up.stdout + up.stderr
    ids = await _seed(connection)
    assert set((await _flags(connection, ids)).values()) == {(False, False, False)}

    await _decorate(connection, ids)
    assert await _flags(connection, ids) == EXPECTED

    # Removing the rows leaves the flags set: a lookup that finds nothing costs less than keeping them exact.
    await connection.execute("DELETE FROM message_reactions WHERE message_id = $1", ids["with_reaction"])
    assert await _flags(connection, ids) == EXPECTED

    # One statement inserting rows for several messages, the plain one among them, flags each of them.
    await connection.execute(
        "INSERT INTO message_reactions (message_id, user_id, emoji)"
        " SELECT id, $2, e FROM unnest($1::bigint[]) AS id, unnest(ARRAY['🎉', '👀']) AS e",
        [ids["plain"], ids["with_file"]],
        ids["alice"],
    )
    flags = await _flags(connection, ids)
    assert flags["plain"] == (False, True, False)
    assert flags["with_file"] == (True, True, False)
