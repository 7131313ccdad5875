"""Mention rows of a message, written at send and edit from its text, and the caller's unread mentions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fechatter_core.db.schema import chat_members, chats, message_mentions, messages
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.mentions.parse import parse, resolve
from fechatter_server.mentions.schemas import MentionOut
from fechatter_server.messages.decorate import decorate
from fechatter_server.views import message_out


async def store_mentions(conn: AsyncConnection, message: Any, *, replace: bool = False) -> list[int]:
    """Write the mention rows of ``message`` (a row with id, chat_id, seq, sender_id, content) from its
    text; with ``replace``, the previous rows go first (an edit). Returns the mentioned user ids."""
    if replace:
        await conn.execute(message_mentions.delete().where(message_mentions.c.message_id == message.id))
    parsed = parse(message.content)
    if not (parsed.user_ids or parsed.everyone or parsed.here):
        return []
    members = set(
        (
            await conn.scalars(
                sa.select(chat_members.c.user_id).where(chat_members.c.chat_id == message.chat_id)
            )
        ).all()
    )
    found = resolve(parsed, members, message.sender_id)
    if found:
        await conn.execute(
            message_mentions.insert(),
            [
                {
                    "message_id": message.id,
                    "user_id": user_id,
                    "chat_id": message.chat_id,
                    "seq": message.seq,
                    "mention_type": kind,
                }
                for user_id, kind in sorted(found.items())
            ],
        )
    return sorted(found)


async def drop_mentions(conn: AsyncConnection, message_id: int) -> None:
    await conn.execute(message_mentions.delete().where(message_mentions.c.message_id == message_id))


async def unread_mentions(ctx: AppContext, caller: AccessClaims, limit: int) -> list[MentionOut]:
    """Messages mentioning the caller after their read position in that chat, newest first."""
    query = (
        sa.select(
            messages.c.id,
            messages.c.chat_id,
            messages.c.seq,
            messages.c.sender_id,
            messages.c.content,
            messages.c.reply_to,
            messages.c.idempotency_key,
            messages.c.created_at,
            messages.c.edited_at,
            messages.c.deleted_at,
            message_mentions.c.mention_type,
        )
        .select_from(message_mentions)
        .join(messages, messages.c.id == message_mentions.c.message_id)
        .join(
            chat_members,
            sa.and_(
                chat_members.c.chat_id == message_mentions.c.chat_id,
                chat_members.c.user_id == message_mentions.c.user_id,
            ),
        )
        .join(chats, chats.c.id == message_mentions.c.chat_id)
        .where(
            message_mentions.c.user_id == caller.user_id,
            chats.c.workspace_id == caller.workspace_id,
            message_mentions.c.seq > chat_members.c.last_read_seq,
            messages.c.deleted_at.is_(None),
        )
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(limit)
    )
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        items = [
            MentionOut(chat_id=row.chat_id, message=message_out(row), mention_type=row.mention_type)
            for row in rows
        ]
        await decorate(conn, [item.message for item in items])
    return items
