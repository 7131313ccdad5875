"""Mention rows of a message, written at send and edit from its text, and the caller's unread mentions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from fechatter_core.db.schema import MESSAGE_COLUMNS, chat_members, chats, message_mentions, messages
from fechatter_core.db.sql import Connection, Sql
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.mentions.parse import parse, resolve
from fechatter_server.mentions.schemas import MentionOut
from fechatter_server.messages.decorate import decorate
from fechatter_server.views import message_out

_DROP = Sql("DELETE FROM message_mentions WHERE message_id = :message_id")
_MEMBERS = Sql("SELECT user_id FROM chat_members WHERE chat_id = :chat_id")
_STORE = Sql(
    """
    INSERT INTO message_mentions (message_id, user_id, chat_id, seq, mention_type)
    SELECT :message_id, u.user_id, :chat_id, :seq, u.kind
    FROM unnest(CAST(:user_ids AS bigint[]), CAST(:kinds AS text[])) AS u(user_id, kind)
    """
)


async def store_mentions(conn: Connection, message: Any, *, replace: bool = False) -> list[int]:
    """Write the mention rows of ``message`` (a row with id, chat_id, seq, sender_id, content) from its
    text; with ``replace``, the previous rows go first (an edit). Returns the mentioned user ids."""
    if replace:
        await drop_mentions(conn, message.id)
    parsed = parse(message.content)
    if not parsed.names_anyone:
        return []
    members = {row.user_id for row in await _MEMBERS.all(conn, chat_id=message.chat_id)}
    found = resolve(parsed, members, message.sender_id)
    if found:
        ordered = sorted(found.items())
        await _STORE.execute(
            conn,
            message_id=message.id,
            chat_id=message.chat_id,
            seq=message.seq,
            user_ids=[user_id for user_id, _ in ordered],
            kinds=[kind for _, kind in ordered],
        )
    return sorted(found)


async def drop_mentions(conn: Connection, message_id: int) -> None:
    await _DROP.execute(conn, message_id=message_id)


async def unread_mentions(ctx: AppContext, caller: AccessClaims, limit: int) -> list[MentionOut]:
    """Messages mentioning the caller after their read position in that chat, newest first."""
    query = (
        sa.select(
            *MESSAGE_COLUMNS,
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
