"""Archiving a chat: it stays readable, but sends, edits, reactions, pins and new members are refused
(409 ``conflict``, "chat is archived") until it is unarchived. Owner or admin of the chat only. A direct
(Single) chat has no owner in any meaningful sense and cannot be archived. Archiving an archived chat (or
unarchiving an active one) answers the chat and changes nothing; a change is announced as ``chat_updated``.
"""

from __future__ import annotations

import sqlalchemy as sa

from fechatter_core import events
from fechatter_core.db.schema import chats
from fechatter_core.errors import forbidden, validation_error
from fechatter_core.outbox import record
from fechatter_core.security import AccessClaims
from fechatter_server.chats.membership import MANAGERS, chat_and_role
from fechatter_server.chats.schemas import ChatType
from fechatter_server.chats.service import chat_event_data, load_chat_out
from fechatter_server.context import AppContext
from fechatter_server.views import ChatOut


async def set_archived(ctx: AppContext, caller: AccessClaims, chat_id: int, *, archived: bool) -> ChatOut:
    async with ctx.engine.begin() as conn:
        chat = await chat_and_role(conn, caller, chat_id, lock=True)
        if chat.role is None:
            raise forbidden("You are not a member of this chat")
        if chat.chat_type == ChatType.SINGLE:
            raise validation_error("A direct chat cannot be archived", "chat_id")
        if chat.role not in MANAGERS:
            raise forbidden("Only the chat's owner or an admin can archive or unarchive it")
        changed = (chat.archived_at is not None) != archived
        if changed:
            await conn.execute(
                chats.update()
                .where(chats.c.id == chat_id)
                .values(archived_at=sa.func.now() if archived else None)
            )
        result = await load_chat_out(conn, caller, chat_id)
        if changed:
            await record(
                conn,
                events.new_event(
                    events.CHAT_UPDATED,
                    workspace_id=caller.workspace_id,
                    actor_id=caller.user_id,
                    chat_id=chat_id,
                    data=chat_event_data(result),
                ),
            )
    if changed:
        ctx.publisher.wake()
    return result
