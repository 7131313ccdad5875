"""Read receipts, derived from the read positions (``chat_members.last_read_seq``): no table of their own,
so they cannot drift from the unread counts. A member has read a message when their position reached its
seq; the sender is left out. Someone who joined after the message starts with the history read (see
chats/membership.py), so they count as having read it. Chats above ``receipts_members_max`` members answer
409: listing every member of a large channel per message is neither cheap nor useful.
"""

from __future__ import annotations

import sqlalchemy as sa

from fechatter_core.db.schema import chat_members
from fechatter_core.errors import conflict
from fechatter_core.security import AccessClaims
from fechatter_server.chats.queries import require_member
from fechatter_server.context import AppContext
from fechatter_server.messages.service import message_in_chat
from fechatter_server.receipts.schemas import ReaderOut, ReceiptsOut


async def receipts(ctx: AppContext, caller: AccessClaims, chat_id: int, message_id: int) -> ReceiptsOut:
    limit = ctx.settings.limits.receipts_members_max
    async with ctx.engine.connect() as conn:
        await require_member(conn, caller, chat_id)
        message = await message_in_chat(conn, chat_id, message_id)
        rows = (
            await conn.execute(
                sa.select(chat_members.c.user_id, chat_members.c.last_read_seq)
                .where(chat_members.c.chat_id == chat_id)
                .order_by(chat_members.c.user_id)
                .limit(limit + 1)
            )
        ).all()
    if len(rows) > limit:
        raise conflict("conflict", f"Read receipts are kept only for chats of up to {limit} members")
    others = [r for r in rows if r.user_id != message.sender_id]
    return ReceiptsOut(
        message_id=message_id,
        read_by=[
            ReaderOut(user_id=r.user_id, last_read_seq=r.last_read_seq)
            for r in others
            if r.last_read_seq >= message.seq
        ],
        unread_by=[r.user_id for r in others if r.last_read_seq < message.seq],
    )
