"""Sending and paging messages.

Send: the chat row is locked by ``UPDATE chats SET last_seq = last_seq + 1`` so ``seq`` is gap-free (a
rolled-back send releases its number) and a retry with the same idempotency key finds the original.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from fechatter_core import events
from fechatter_core.db.schema import chat_members, chats, messages
from fechatter_core.errors import ApiError, validation_error
from fechatter_core.outbox import record
from fechatter_core.security import AccessClaims
from fechatter_server.chats.queries import require_member
from fechatter_server.context import AppContext
from fechatter_server.messages.schemas import SendMessageRequest
from fechatter_server.views import MessageOut, message_out, to_builtins

_MESSAGE_COLUMNS = (
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
)


def _check_content(ctx: AppContext, data: SendMessageRequest) -> str:
    content = data.content.strip()
    limit = ctx.settings.limits.message_max_chars
    if not content and not data.files:
        raise validation_error("content must not be empty", "content")
    if len(content) > limit:
        raise validation_error(f"content is longer than {limit} characters", "content")
    if "\x00" in content:
        raise validation_error("content must not contain NUL characters", "content")
    if data.files:
        # No upload has been stored yet for these ids (uploads arrive with the files API).
        raise validation_error("Unknown file id", "files")
    return content


async def _existing(conn: Any, chat_id: int, sender_id: int, key: str) -> Any:
    return (
        await conn.execute(
            sa.select(*_MESSAGE_COLUMNS).where(
                messages.c.chat_id == chat_id,
                messages.c.sender_id == sender_id,
                messages.c.idempotency_key == key,
            )
        )
    ).one_or_none()


def _replay(row: Any, content: str, reply_to: int | None) -> MessageOut:
    if row.content != content or row.reply_to != reply_to:
        raise ApiError(
            409, "idempotency_conflict", "This idempotency key was already used for a different message"
        )
    return message_out(row)


async def send_message(
    ctx: AppContext, caller: AccessClaims, chat_id: int, data: SendMessageRequest, header_key: str | None
) -> tuple[MessageOut, bool]:
    """Returns the message and whether it was created now (False: an idempotent replay)."""
    content = _check_content(ctx, data)
    key = data.idempotency_key or header_key
    if key is not None and not 1 <= len(key) <= 128:
        raise validation_error("idempotency key must be 1-128 characters", "idempotency_key")

    if key is not None:
        async with ctx.engine.connect() as conn:
            found = await _existing(conn, chat_id, caller.user_id, key)
        if found is not None:
            return _replay(found, content, data.reply_to), False

    try:
        message = await _insert(ctx, caller, chat_id, content, data.reply_to, key)
    except _KeyTaken:
        # A concurrent send with the same key won while we waited for the chat lock; ours rolled back,
        # which also released the seq it had taken.
        async with ctx.engine.connect() as conn:
            found = await _existing(conn, chat_id, caller.user_id, key or "")
        assert found is not None
        return _replay(found, content, data.reply_to), False
    ctx.publisher.wake()
    return message, True


class _KeyTaken(Exception):
    pass


async def _insert(
    ctx: AppContext, caller: AccessClaims, chat_id: int, content: str, reply_to: int | None, key: str | None
) -> MessageOut:
    async with ctx.engine.begin() as conn:
        seq = await conn.scalar(
            chats.update()
            .where(
                chats.c.id == chat_id,
                chats.c.workspace_id == caller.workspace_id,
                sa.exists().where(
                    chat_members.c.chat_id == chat_id, chat_members.c.user_id == caller.user_id
                ),
            )
            .values(last_seq=chats.c.last_seq + 1, last_message_at=sa.func.now())
            .returning(chats.c.last_seq)
        )
        if seq is None:
            await require_member(conn, caller, chat_id)  # raises the precise 404 / 403
            raise AssertionError("unreachable: membership check passed but chat update matched nothing")
        if reply_to is not None:
            target = await conn.scalar(
                sa.select(messages.c.id).where(messages.c.id == reply_to, messages.c.chat_id == chat_id)
            )
            if target is None:
                raise validation_error("reply_to is not a message of this chat", "reply_to")
        insert = (
            pg_insert(messages)
            .values(
                chat_id=chat_id,
                seq=seq,
                sender_id=caller.user_id,
                content=content,
                reply_to=reply_to,
                idempotency_key=key,
            )
            .on_conflict_do_nothing(constraint="messages_idempotency_key")
            .returning(*_MESSAGE_COLUMNS)
        )
        row = (await conn.execute(insert)).one_or_none()
        if row is None:
            raise _KeyTaken
        # Posting in a chat means having seen it: the sender's read position moves to their message.
        await conn.execute(
            chat_members.update()
            .where(
                chat_members.c.chat_id == chat_id,
                chat_members.c.user_id == caller.user_id,
                chat_members.c.last_read_seq < seq,
            )
            .values(last_read_seq=seq)
        )
        message = message_out(row)
        await record(
            conn,
            events.new_event(
                events.MESSAGE_CREATED,
                workspace_id=caller.workspace_id,
                actor_id=caller.user_id,
                chat_id=chat_id,
                data=to_builtins(message),
            ),
        )
    return message


async def list_messages(
    ctx: AppContext, caller: AccessClaims, chat_id: int, *, limit: int, before: int | None, after: int | None
) -> tuple[list[MessageOut], bool]:
    if before is not None and after is not None:
        raise validation_error("Use either before or after, not both", "before")
    async with ctx.engine.connect() as conn:
        await require_member(conn, caller, chat_id)
        query = sa.select(*_MESSAGE_COLUMNS).where(messages.c.chat_id == chat_id).limit(limit + 1)
        if after is not None:
            query = query.where(messages.c.seq > after).order_by(messages.c.seq)
        else:
            if before is not None:
                query = query.where(messages.c.seq < before)
            query = query.order_by(messages.c.seq.desc())
        rows = (await conn.execute(query)).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    if after is None:
        rows.reverse()
    return [message_out(row) for row in rows], has_more
