"""Typing and presence as the chat API sees them: checks here, state and announcements in
``fechatter_core.live`` (shared with notify, which sweeps lapsed typing and tracks connections)."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from redis.exceptions import RedisError

from fechatter_core import live
from fechatter_core.db import sql
from fechatter_core.db.schema import chat_members, users, workspace_members
from fechatter_core.errors import ApiError, forbidden
from fechatter_core.security import AccessClaims
from fechatter_core.workspace_access import require_workspace_member
from fechatter_server.chats.queries import require_member
from fechatter_server.context import AppContext
from fechatter_server.realtime.schemas import OnlineUserOut, PresenceOut

log = logging.getLogger(__name__)


def _unavailable(exc: Exception) -> ApiError:
    log.warning("realtime state unavailable: %s", exc)
    return ApiError(503, "unavailable", "Typing and presence are unavailable right now; try again")


def _typing_settings(ctx: AppContext) -> live.TypingSettings:
    realtime = ctx.settings.realtime
    return live.TypingSettings(
        lapse_ms=int(realtime.typing_lapse_seconds * 1000),
        throttle_ms=int(realtime.typing_throttle_seconds * 1000),
    )


async def typing(ctx: AppContext, caller: AccessClaims, chat_id: int) -> bool:
    """The caller is typing in the chat. Returns whether ``typing_started`` was announced now."""
    throttle = live.typing_throttle_key(caller.workspace_id, chat_id, caller.user_id)
    try:
        # Set only after a call passed the membership check below, so a repeat within the throttle window
        # (a client calling on every keystroke) costs one Redis GET.
        if await ctx.redis.exists(throttle):
            return False
    except RedisError as exc:
        raise _unavailable(exc) from None
    async with ctx.engine.connect() as conn:
        await require_member(conn, caller, chat_id)
        members = (
            await conn.scalars(sa.select(chat_members.c.user_id).where(chat_members.c.chat_id == chat_id))
        ).all()
    recipients = sorted(user for user in members if user != caller.user_id)
    try:
        return await live.typing_start(
            ctx.redis,
            ctx.nats,
            _typing_settings(ctx),
            workspace_id=caller.workspace_id,
            chat_id=chat_id,
            user_id=caller.user_id,
            recipients=recipients,
        )
    except RedisError as exc:
        raise _unavailable(exc) from None


async def stopped_typing(ctx: AppContext, caller: AccessClaims, chat_id: int) -> None:
    """The caller sent a message in the chat: their typing there ends now. Best effort: a send never fails
    because Redis is down (the typing then lapses by itself)."""
    try:
        await live.typing_stop(
            ctx.hot_redis, ctx.nats, workspace_id=caller.workspace_id, chat_id=chat_id, user_id=caller.user_id
        )
    except Exception as exc:
        log.warning("typing stop of chat %s not announced: %s", chat_id, exc)


async def set_presence(ctx: AppContext, caller: AccessClaims, status: str) -> PresenceOut:
    async with sql.connect(ctx.engine) as conn:
        await require_workspace_member(conn, caller)
    try:
        await live.presence_set(
            ctx.redis,
            ctx.nats,
            workspace_id=caller.workspace_id,
            user_id=caller.user_id,
            status="away" if status == "away" else "online",
            away_ttl_ms=ctx.settings.realtime.away_ttl_seconds * 1000,
        )
        (current,) = await live.presence_of(ctx.redis, caller.workspace_id, [caller.user_id])
    except RedisError as exc:
        raise _unavailable(exc) from None
    return PresenceOut(user_id=caller.user_id, status=current)


async def list_presence(ctx: AppContext, caller: AccessClaims) -> list[PresenceOut]:
    async with ctx.engine.connect() as conn:
        await require_workspace_member(conn, caller)
        user_ids = list(
            (
                await conn.scalars(
                    sa.select(workspace_members.c.user_id)
                    .where(workspace_members.c.workspace_id == caller.workspace_id)
                    .order_by(workspace_members.c.user_id)
                )
            ).all()
        )
    try:
        statuses = await live.presence_of(ctx.redis, caller.workspace_id, user_ids)
    except RedisError as exc:
        raise _unavailable(exc) from None
    return [PresenceOut(user_id=u, status=s) for u, s in zip(user_ids, statuses, strict=True)]


async def online_users(
    ctx: AppContext, caller: AccessClaims, *, chat_id: int | None, workspace_id: int | None
) -> list[OnlineUserOut]:
    """Who is around (online or away): the members of ``chat_id`` (members only), else the people of the
    caller's workspace; never the caller. ``workspace_id``, when given, must be the caller's."""
    if workspace_id is not None and workspace_id != caller.workspace_id:
        raise forbidden("That is not your workspace")
    async with ctx.engine.connect() as conn:
        if chat_id is not None:
            await require_member(conn, caller, chat_id)
            people = sa.select(chat_members.c.user_id).where(chat_members.c.chat_id == chat_id)
        else:
            await require_workspace_member(conn, caller)
            people = sa.select(workspace_members.c.user_id).where(
                workspace_members.c.workspace_id == caller.workspace_id
            )
        rows = (
            await conn.execute(
                sa.select(users.c.id, users.c.fullname)
                .where(users.c.id.in_(people.scalar_subquery()), users.c.id != caller.user_id)
                .order_by(users.c.id)
            )
        ).all()
    try:
        statuses = await live.presence_of(ctx.redis, caller.workspace_id, [row.id for row in rows])
    except RedisError as exc:
        raise _unavailable(exc) from None
    return [
        OnlineUserOut(user_id=row.id, fullname=row.fullname, status=status)
        for row, status in zip(rows, statuses, strict=True)
        if status != "offline"
    ]
