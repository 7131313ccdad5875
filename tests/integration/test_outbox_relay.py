"""A send that committed but whose process died before publishing is still delivered: the outbox sweep
publishes what is left in the table."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx

from fechatter_core import events
from tests.conftest import create_chat, team
from tests.sse import open_sse
from tests.stackutil import RunningStack


async def test_committed_event_left_in_the_outbox_reaches_sse(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    http, stream = await open_sse(stack, bob)
    conn = await asyncpg.connect(stack.database_url())
    try:
        await stream.next("connected")
        # What a send does in its transaction, minus the wake-up of the publisher: the process "crashed"
        # right after COMMIT.
        async with conn.transaction():
            seq = await conn.fetchval(
                "UPDATE chats SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq", chat["id"]
            )
            row = await conn.fetchrow(
                "INSERT INTO messages (chat_id, seq, sender_id, content) VALUES ($1, $2, $3, $4)"
                " RETURNING id, created_at",
                chat["id"],
                seq,
                alice.id,
                "orphaned by a crash",
            )
            message = {
                "id": row["id"],
                "chat_id": chat["id"],
                "seq": seq,
                "sender_id": alice.id,
                "content": "orphaned by a crash",
                "files": [],
                "reply_to": None,
                "idempotency_key": None,
                "created_at": row["created_at"].isoformat(),
                "edited_at": None,
                "deleted": False,
            }
            event = events.new_event(
                events.MESSAGE_CREATED,
                workspace_id=alice.workspace_id,
                actor_id=alice.id,
                chat_id=chat["id"],
                data=message,
            )
            await conn.execute(
                "INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)",
                uuid.UUID(event.id),
                event.subject,
                events.encode_event(event),
            )
        _, data = await stream.next("new_message", timeout=5)
        assert data["id"] == row["id"] and data["content"] == "orphaned by a crash"

        deadline = time.monotonic() + 5
        while await conn.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1", uuid.UUID(event.id)):
            assert time.monotonic() < deadline, "published outbox rows are removed"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
        await stream.close()
        await http.aclose()
