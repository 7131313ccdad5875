"""Reactions: one row per (message, user, emoji); adding twice is one reaction, removing a missing one is a
no-op. Both answer the message with its reactions.

The message row is locked (``FOR NO KEY UPDATE``, as edit and delete do), so reactions of one message are
serialised: the distinct-emoji limit holds under concurrency and no reaction lands on a message a
concurrent delete has just emptied.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from fechatter_core import events
from fechatter_core.db.schema import message_reactions
from fechatter_core.errors import conflict, validation_error
from fechatter_core.outbox import record
from fechatter_core.security import AccessClaims
from fechatter_server.chats.queries import refuse_if_archived, require_member
from fechatter_server.context import AppContext
from fechatter_server.messages.decorate import decorate
from fechatter_server.messages.service import message_in_chat
from fechatter_server.reactions.emoji import emoji_problem
from fechatter_server.views import MessageOut, message_out


def check_emoji(emoji: str) -> str:
    problem = emoji_problem(emoji)
    if problem is not None:
        raise validation_error(problem, "emoji")
    return emoji


async def react(
    ctx: AppContext, caller: AccessClaims, chat_id: int, message_id: int, emoji: str, *, add: bool
) -> MessageOut:
    check_emoji(emoji)
    async with ctx.engine.begin() as conn:
        member = await require_member(conn, caller, chat_id)
        row = await message_in_chat(conn, chat_id, message_id, lock=True)
        if row.deleted_at is not None:
            raise conflict("conflict", "The message was deleted")
        refuse_if_archived(member)
        if add:
            changed = await _add(ctx, conn, caller, message_id, emoji)
        else:
            changed = await conn.scalar(
                message_reactions.delete()
                .where(
                    message_reactions.c.message_id == message_id,
                    message_reactions.c.user_id == caller.user_id,
                    message_reactions.c.emoji == emoji,
                )
                .returning(message_reactions.c.message_id)
            )
        if changed is not None:
            await record(
                conn,
                events.new_event(
                    events.MESSAGE_REACTION_ADDED if add else events.MESSAGE_REACTION_REMOVED,
                    workspace_id=caller.workspace_id,
                    actor_id=caller.user_id,
                    chat_id=chat_id,
                    data={
                        "chat_id": chat_id,
                        "message_id": message_id,
                        "user_id": caller.user_id,
                        "emoji": emoji,
                    },
                ),
            )
        message = message_out(row)
        await decorate(conn, [message])
    if changed is not None:
        ctx.publisher.wake()
    return message


async def _add(
    ctx: AppContext, conn: AsyncConnection, caller: AccessClaims, message_id: int, emoji: str
) -> int | None:
    """Inserts the reaction; the message id when it is new, None when the caller had it already."""
    limit = ctx.settings.limits.reactions_per_message_max
    present = (
        sa.select(message_reactions.c.emoji).where(message_reactions.c.message_id == message_id).distinct()
    )
    emojis = set((await conn.scalars(present)).all())
    if emoji not in emojis and len(emojis) >= limit:
        raise conflict("conflict", f"A message has at most {limit} different reactions", "emoji")
    return await conn.scalar(
        pg_insert(message_reactions)
        .values(message_id=message_id, user_id=caller.user_id, emoji=emoji)
        .on_conflict_do_nothing()
        .returning(message_reactions.c.message_id)
    )
