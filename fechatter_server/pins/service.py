"""Pinned messages of a chat.

Who pins and unpins: any member of a Single or Group chat; the owner or an admin in a channel (Private or
Public), where pins are announcements. A chat holds a limited number of pins (``pins_per_chat_max``);
pinning a pinned message or unpinning one that is not pinned answers and changes nothing. A deleted
message cannot be pinned, and deleting a message unpins it (messages/service.py). Pins of one chat are
serialised by a transaction-scoped advisory lock, so the limit holds under concurrency.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from fechatter_core import events
from fechatter_core.db.schema import MESSAGE_COLUMNS, message_pins, messages
from fechatter_core.errors import conflict, forbidden
from fechatter_core.outbox import record
from fechatter_core.security import AccessClaims
from fechatter_server.chats.queries import refuse_if_archived, require_member
from fechatter_server.chats.schemas import ChatType
from fechatter_server.context import AppContext
from fechatter_server.messages.decorate import decorate
from fechatter_server.messages.service import message_in_chat, unpinned_event
from fechatter_server.pins.schemas import PinOut
from fechatter_server.views import iso, message_out, to_builtins

_ANYONE_PINS = frozenset({ChatType.SINGLE.value, ChatType.GROUP.value})
_MANAGERS = frozenset({"owner", "admin"})


def _may_pin(member: Any) -> None:
    if member.chat_type not in _ANYONE_PINS and member.role not in _MANAGERS:
        raise forbidden("Only the channel's owner or an admin can pin or unpin messages")


async def _lock_pins(conn: AsyncConnection, chat_id: int) -> None:
    key = sa.func.hashtextextended(sa.literal(f"pins:{chat_id}"), 0)
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


async def _pin_row(conn: AsyncConnection, message_id: int) -> Any:
    return (
        await conn.execute(
            sa.select(message_pins.c.pinned_by, message_pins.c.pinned_at).where(
                message_pins.c.message_id == message_id
            )
        )
    ).one_or_none()


async def pin(ctx: AppContext, caller: AccessClaims, chat_id: int, message_id: int) -> PinOut:
    async with ctx.engine.begin() as conn:
        member = await require_member(conn, caller, chat_id)
        _may_pin(member)
        refuse_if_archived(member)
        await _lock_pins(conn, chat_id)
        row = await message_in_chat(conn, chat_id, message_id, lock=True)
        if row.deleted_at is not None:
            raise conflict("conflict", "The message was deleted")
        existing = await _pin_row(conn, message_id)
        created = existing is None
        if created:
            limit = ctx.settings.limits.pins_per_chat_max
            count = await conn.scalar(
                sa.select(sa.func.count()).select_from(message_pins).where(message_pins.c.chat_id == chat_id)
            )
            if (count or 0) >= limit:
                raise conflict("conflict", f"A chat has at most {limit} pinned messages")
            existing = (
                await conn.execute(
                    pg_insert(message_pins)
                    .values(message_id=message_id, chat_id=chat_id, pinned_by=caller.user_id)
                    .returning(message_pins.c.pinned_by, message_pins.c.pinned_at)
                )
            ).one()
        message = message_out(row)
        await decorate(conn, [message])
        result = PinOut(
            chat_id=chat_id,
            message=message,
            pinned_by=existing.pinned_by,
            pinned_at=iso(existing.pinned_at) or "",
        )
        if created:
            await record(
                conn,
                events.new_event(
                    events.MESSAGE_PINNED,
                    workspace_id=caller.workspace_id,
                    actor_id=caller.user_id,
                    chat_id=chat_id,
                    data={"message_id": message_id, **to_builtins(result)},
                ),
            )
    if created:
        ctx.publisher.wake()
    return result


async def unpin(ctx: AppContext, caller: AccessClaims, chat_id: int, message_id: int) -> dict[str, Any]:
    async with ctx.engine.begin() as conn:
        member = await require_member(conn, caller, chat_id)
        _may_pin(member)
        refuse_if_archived(member)
        await message_in_chat(conn, chat_id, message_id)
        removed = await conn.scalar(
            message_pins.delete()
            .where(message_pins.c.message_id == message_id)
            .returning(message_pins.c.message_id)
        )
        if removed is not None:
            await record(conn, unpinned_event(caller, chat_id, message_id))
    if removed is not None:
        ctx.publisher.wake()
    return {"chat_id": chat_id, "message_id": message_id, "pinned": False}


async def list_pins(ctx: AppContext, caller: AccessClaims, chat_id: int) -> list[PinOut]:
    """Every pin of the chat (at most the configured limit), newest pin first."""
    columns = list(MESSAGE_COLUMNS)
    async with ctx.engine.connect() as conn:
        await require_member(conn, caller, chat_id)
        rows = (
            await conn.execute(
                sa.select(*columns, message_pins.c.pinned_by, message_pins.c.pinned_at)
                .join(messages, messages.c.id == message_pins.c.message_id)
                .where(message_pins.c.chat_id == chat_id)
                .order_by(message_pins.c.pinned_at.desc(), message_pins.c.message_id.desc())
            )
        ).all()
        pins = [
            PinOut(
                chat_id=chat_id,
                message=message_out(r),
                pinned_by=r.pinned_by,
                pinned_at=iso(r.pinned_at) or "",
            )
            for r in rows
        ]
        await decorate(conn, [p.message for p in pins])
    return pins
