"""Read positions and unread counts.

A member's read position (``chat_members.last_read_seq``) only moves forward and never past the chat's
last message; unread counts are derived from it by ``reads.queries.unread_count`` (DESIGN.md §5). A move
is announced as ``fechatter.message.read`` through the outbox, in the same transaction, so the reader's
other devices learn it (notify delivers it to the reader only); a call that moves nothing announces nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fechatter_core import events
from fechatter_core.db import sql
from fechatter_core.db.schema import chat_members, chats
from fechatter_core.db.sql import Sql
from fechatter_core.outbox import record
from fechatter_core.security import AccessClaims
from fechatter_server.chats.queries import require_member
from fechatter_server.context import AppContext
from fechatter_server.reads.queries import unread_count, unread_count_sql
from fechatter_server.reads.schemas import UnreadCountOut
from fechatter_server.views import ReadStateOut


async def mark_read(ctx: AppContext, caller: AccessClaims, chat_id: int, seq: int) -> ReadStateOut:
    """Move the caller's read position to ``seq`` (clamped to the chat's last seq) if that is forward;
    answers the position after the call and what is still unread."""
    async with ctx.engine.begin() as conn:
        moved_to = await _advance(conn, caller, chat_id, seq)
        if moved_to is None:
            # Nothing moved: not a member (404 / 403 raised here), or the position is already there.
            position: int = (await require_member(conn, caller, chat_id)).last_read_seq
        else:
            position = moved_to
            await record(conn, _read_event(caller, chat_id, position))
        unread = await _unread_in(conn, caller, chat_id)
    if moved_to is not None:
        ctx.publisher.wake()
    return ReadStateOut(chat_id=chat_id, last_read_seq=position, unread_count=unread)


async def _advance(conn: AsyncConnection, caller: AccessClaims, chat_id: int, seq: int) -> int | None:
    """The new position, or None when the caller's membership row did not move (or does not exist)."""
    # A client may ask for a seq it has not seen yet (a stale or optimistic cursor); reading "everything"
    # means up to the last message, so later messages still count as unread.
    target = sa.func.least(sa.literal(seq, sa.BigInteger), chats.c.last_seq)
    return await conn.scalar(
        chat_members.update()
        .where(
            chat_members.c.chat_id == chat_id,
            chat_members.c.user_id == caller.user_id,
            chats.c.id == chat_members.c.chat_id,
            chats.c.workspace_id == caller.workspace_id,
            # Forward only. The row lock makes concurrent reads of one member serialize, and the second
            # re-checks this against the first one's result, so a slower, older read cannot move it back.
            chat_members.c.last_read_seq < target,
        )
        .values(last_read_seq=target)
        .returning(chat_members.c.last_read_seq)
    )


def _read_event(caller: AccessClaims, chat_id: int, position: int) -> events.Event:
    return events.new_event(
        events.MESSAGE_READ,
        workspace_id=caller.workspace_id,
        actor_id=caller.user_id,
        chat_id=chat_id,
        data={"chat_id": chat_id, "user_id": caller.user_id, "last_read_seq": position},
    )


async def _unread_in(conn: AsyncConnection, caller: AccessClaims, chat_id: int) -> int:
    count = await conn.scalar(
        sa.select(unread_count(chat_members)).where(
            chat_members.c.chat_id == chat_id, chat_members.c.user_id == caller.user_id
        )
    )
    return int(count or 0)


_UNREAD_COUNTS = Sql(
    """
    SELECT me.chat_id, __UNREAD__ AS unread_count
    FROM chat_members me JOIN chats c ON c.id = me.chat_id
    WHERE me.user_id = :user_id AND c.workspace_id = :workspace_id
    ORDER BY me.chat_id
    """.replace("__UNREAD__", unread_count_sql("me"))
)


async def unread_counts(ctx: AppContext, caller: AccessClaims) -> list[UnreadCountOut]:
    """Every chat of the caller in the token's workspace, in chat id order, in one statement."""
    async with sql.connect(ctx.engine) as conn:
        rows = await _UNREAD_COUNTS.all(conn, user_id=caller.user_id, workspace_id=caller.workspace_id)
    return [UnreadCountOut(chat_id=row.chat_id, unread_count=row.unread_count) for row in rows]
