"""Workspace membership, the member list and invites."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from fechatter_core.db.schema import users, workspace_invites, workspace_members
from fechatter_core.errors import forbidden, unauthorized
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.views import InviteOut, UserOut, iso, user_out


async def get_user(ctx: AppContext, caller: AccessClaims) -> UserOut:
    async with ctx.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(users)
                .join(workspace_members, workspace_members.c.user_id == users.c.id)
                .where(users.c.id == caller.user_id, workspace_members.c.workspace_id == caller.workspace_id)
            )
        ).one_or_none()
    if row is None:
        raise unauthorized("This account is not a member of the token's workspace")
    return user_out(row, caller.workspace_id)


async def list_users(ctx: AppContext, caller: AccessClaims) -> list[UserOut]:
    async with ctx.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(users)
                .join(workspace_members, workspace_members.c.user_id == users.c.id)
                .where(workspace_members.c.workspace_id == caller.workspace_id)
                .order_by(users.c.is_bot, users.c.fullname, users.c.id)
            )
        ).all()
    return [user_out(row, caller.workspace_id) for row in rows]


async def create_invite(ctx: AppContext, caller: AccessClaims, code: str) -> InviteOut:
    async with ctx.engine.begin() as conn:
        role = await conn.scalar(
            sa.select(workspace_members.c.role).where(
                workspace_members.c.workspace_id == caller.workspace_id,
                workspace_members.c.user_id == caller.user_id,
            )
        )
        if role not in ("owner", "admin"):
            raise forbidden("Only the workspace owner or an admin can invite people")
        expires_at = datetime.now(UTC) + timedelta(hours=ctx.settings.limits.invite_ttl_hours)
        await conn.execute(
            workspace_invites.insert().values(
                code=code, workspace_id=caller.workspace_id, created_by=caller.user_id, expires_at=expires_at
            )
        )
    return InviteOut(code=code, expires_at=iso(expires_at) or "")
