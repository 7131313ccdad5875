"""Chat creation and listing. Each mutation writes its domain event through the outbox."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from fechatter_core import events
from fechatter_core.db import sql
from fechatter_core.db.schema import chat_members, chats, workspace_members
from fechatter_core.db.sql import Connection
from fechatter_core.errors import forbidden, not_found, validation_error
from fechatter_core.outbox import record
from fechatter_core.security import AccessClaims
from fechatter_core.workspace_access import require_workspace_member
from fechatter_server.chats.queries import MY_CHAT_ROWS, ONE_CHAT_ROW, PUBLIC_CHANNEL_ROWS
from fechatter_server.chats.schemas import ChatType, CreateChatRequest
from fechatter_server.context import AppContext
from fechatter_server.messages.decorate import decorate
from fechatter_server.views import ChatOut, MessageOut, file_out, iso, message_out, to_builtins


class _LastMessage:
    """Adapts the ``lm_*`` columns of a chat row to what ``message_out`` reads."""

    def __init__(self, row: Any) -> None:
        self.id = row.lm_id
        self.chat_id = row.id
        self.seq = row.lm_seq
        self.sender_id = row.lm_sender_id
        self.content = row.lm_content
        self.reply_to = row.lm_reply_to
        self.idempotency_key = row.lm_idempotency_key
        self.created_at = row.lm_created_at
        self.edited_at = row.lm_edited_at
        self.deleted_at = row.lm_deleted_at
        self.reply_count = row.lm_reply_count


def _last_message(row: Any) -> MessageOut | None:
    if row.lm_id is None:
        return None
    message = message_out(_LastMessage(row))
    if not message.deleted and row.lm_files:
        raw = json.loads(row.lm_files) if isinstance(row.lm_files, str) else row.lm_files
        message.files = [file_out(SimpleNamespace(**item)) for item in raw]
    return message


def chat_out(row: Any) -> ChatOut:
    last = _last_message(row)
    return ChatOut(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        chat_type=row.chat_type,
        description=row.description,
        owner_id=row.owner_id,
        member_ids=list(row.member_ids or []),
        last_seq=row.last_seq,
        unread_count=row.unread_count,
        last_message=last,
        created_at=iso(row.created_at) or "",
        archived=row.archived_at is not None,
        unread_mentions=row.unread_mentions,
    )


async def chats_out(conn: Any, rows: Any) -> list[ChatOut]:
    """Chat shapes, their last messages decorated (reactions, mentions) in one pass."""
    result = [chat_out(row) for row in rows]
    await decorate(conn, [c.last_message for c in result if c.last_message is not None], files=False)
    return result


# What only the reader who loaded a chat sees of it; events go to every member, so they leave these out.
_PER_READER = ("unread_count", "unread_mentions")


def chat_event_data(chat: ChatOut) -> dict[str, Any]:
    """A chat as chat_created/chat_updated events carry it: shared fields, not the actor's unread counts."""
    data = to_builtins(chat)
    for name in _PER_READER:
        data.pop(name, None)
    return data


async def load_chat_out(conn: Any, caller: AccessClaims, chat_id: int) -> ChatOut:
    return (await chats_out(conn, [await load_chat(conn, caller, chat_id)]))[0]


async def list_chats(ctx: AppContext, caller: AccessClaims) -> list[ChatOut]:
    async with sql.connect(ctx.engine) as conn:
        rows = await MY_CHAT_ROWS.all(conn, user_id=caller.user_id, workspace_id=caller.workspace_id)
        return await chats_out(conn, rows)


async def get_chat(ctx: AppContext, caller: AccessClaims, chat_id: int) -> ChatOut:
    async with sql.connect(ctx.engine) as conn:
        row = await load_chat(conn, caller, chat_id)
        if row is None:
            raise not_found("Chat not found")
        if caller.user_id not in (row.member_ids or []):
            if row.chat_type != ChatType.PUBLIC_CHANNEL.value:
                raise forbidden("You are not a member of this chat")
            await require_workspace_member(conn, caller)  # a public channel is open to the workspace
        return (await chats_out(conn, [row]))[0]


async def load_chat(conn: Connection, caller: AccessClaims, chat_id: int) -> Any:
    return await ONE_CHAT_ROW.one_or_none(
        conn, user_id=caller.user_id, workspace_id=caller.workspace_id, chat_id=chat_id
    )


async def list_public_channels(ctx: AppContext, caller: AccessClaims) -> list[ChatOut]:
    """Public channels of the workspace, joined or not, for browsing."""
    async with sql.connect(ctx.engine) as conn:
        await require_workspace_member(conn, caller)
        rows = await PUBLIC_CHANNEL_ROWS.all(conn, user_id=caller.user_id, workspace_id=caller.workspace_id)
        return await chats_out(conn, rows)


async def create_chat(ctx: AppContext, caller: AccessClaims, data: CreateChatRequest) -> tuple[ChatOut, bool]:
    """Returns the chat and whether it was created (False: the existing direct chat of that pair)."""
    limits = ctx.settings.limits
    others = sorted({m for m in data.members if m != caller.user_id})
    name = data.name.strip()
    if data.chat_type is ChatType.SINGLE:
        if len(others) != 1 or len(data.members) != 1:
            raise validation_error("A Single chat takes exactly one other member", "members")
    else:
        if not name:
            raise validation_error("name must not be blank", "name")
        if data.chat_type is ChatType.GROUP and not others:
            raise validation_error("A Group chat needs at least one other member", "members")
    if len(others) + 1 > limits.chat_members_max:
        raise validation_error(f"A chat has at most {limits.chat_members_max} members", "members")

    async with ctx.engine.begin() as conn:
        # Share-locked until the commit, so a removal from the workspace waits and then finds the new chat.
        known = set(
            (
                await conn.scalars(
                    sa.select(workspace_members.c.user_id)
                    .where(
                        workspace_members.c.workspace_id == caller.workspace_id,
                        workspace_members.c.user_id.in_([caller.user_id, *others]),
                    )
                    .with_for_update(read=True)
                )
            ).all()
        )
        if caller.user_id not in known:
            raise forbidden("You are no longer a member of this workspace")
        missing = [m for m in others if m not in known]
        if missing:
            raise validation_error(f"Not members of this workspace: {missing}", "members")
        direct_key = None
        if data.chat_type is ChatType.SINGLE:
            pair = sorted([caller.user_id, others[0]])
            direct_key = f"{pair[0]}:{pair[1]}"
            existing = await conn.scalar(
                sa.select(chats.c.id).where(
                    chats.c.workspace_id == caller.workspace_id, chats.c.direct_key == direct_key
                )
            )
            if existing is not None:
                return await load_chat_out(conn, caller, existing), False
            # Lock the pair so two concurrent requests cannot both create the direct chat.
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(direct_key))))
            existing = await conn.scalar(
                sa.select(chats.c.id).where(
                    chats.c.workspace_id == caller.workspace_id, chats.c.direct_key == direct_key
                )
            )
            if existing is not None:
                return await load_chat_out(conn, caller, existing), False
            name = name or "Direct message"
        chat_id = await conn.scalar(
            chats.insert()
            .values(
                workspace_id=caller.workspace_id,
                name=name,
                chat_type=data.chat_type.value,
                description=data.description.strip(),
                owner_id=caller.user_id,
                direct_key=direct_key,
            )
            .returning(chats.c.id)
        )
        await conn.execute(
            chat_members.insert(),
            [{"chat_id": chat_id, "user_id": caller.user_id, "role": "owner"}]
            + [{"chat_id": chat_id, "user_id": m, "role": "member"} for m in others],
        )
        chat = await load_chat_out(conn, caller, chat_id)
        await record(
            conn,
            events.new_event(
                events.CHAT_CREATED,
                workspace_id=caller.workspace_id,
                actor_id=caller.user_id,
                chat_id=chat_id,
                data=chat_event_data(chat),
            ),
        )
    ctx.publisher.wake()
    return chat, True
