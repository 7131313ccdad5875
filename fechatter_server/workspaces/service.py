"""Workspaces: membership and roles, invites, and moving between the workspaces a person belongs to.

An access token is scoped to one workspace; switching issues a new session for another workspace the
user belongs to, and every query filters by the token's workspace.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from fechatter_core import events
from fechatter_core.db import sql
from fechatter_core.db.schema import (
    chat_members,
    chats,
    refresh_tokens,
    users,
    workspace_former_members,
    workspace_invites,
    workspace_members,
    workspaces,
)
from fechatter_core.db.sql import Sql
from fechatter_core.errors import forbidden, not_found, unauthorized, validation_error
from fechatter_core.outbox import record
from fechatter_core.security import AccessClaims
from fechatter_core.workspace_access import require_workspace_member, workspace_role
from fechatter_server.auth.service import (
    create_workspace_row,
    issue_session,
    new_invite_code,
    redeem_invite,
)
from fechatter_server.chats.membership import drop_member
from fechatter_server.context import AppContext
from fechatter_server.views import (
    FormerMemberOut,
    InviteOut,
    RemovedMemberOut,
    SessionOut,
    UserOut,
    WorkspaceMembershipOut,
    WorkspaceUserOut,
    iso,
    user_out,
    workspace_user_out,
)
from fechatter_server.workspaces.schemas import CreateInviteRequest, SetRoleRequest

MANAGERS = ("owner", "admin")


_USER = Sql(
    """
    SELECT u.id, u.email, u.fullname, u.is_bot, u.created_at
    FROM users u JOIN workspace_members w ON w.user_id = u.id
    WHERE u.id = :user_id AND w.workspace_id = :workspace_id
    """
)


async def get_user(ctx: AppContext, caller: AccessClaims) -> UserOut:
    async with sql.connect(ctx.engine) as conn:
        row = await _USER.one_or_none(conn, user_id=caller.user_id, workspace_id=caller.workspace_id)
    if row is None:
        raise unauthorized("This account is not a member of the token's workspace")
    return user_out(row, caller.workspace_id)


async def list_users(ctx: AppContext, caller: AccessClaims) -> list[WorkspaceUserOut]:
    async with ctx.engine.connect() as conn:
        await require_workspace_member(conn, caller)
        rows = (
            await conn.execute(
                sa.select(users, workspace_members.c.role)
                .join(workspace_members, workspace_members.c.user_id == users.c.id)
                .where(workspace_members.c.workspace_id == caller.workspace_id)
                .order_by(users.c.is_bot, users.c.fullname, users.c.id)
            )
        ).all()
    return [workspace_user_out(row, caller.workspace_id) for row in rows]


async def create_invite(ctx: AppContext, caller: AccessClaims, data: CreateInviteRequest) -> InviteOut:
    hours = data.expires_in_hours or ctx.settings.limits.invite_ttl_hours
    async with ctx.engine.begin() as conn:
        if await workspace_role(conn, caller.workspace_id, caller.user_id) not in MANAGERS:
            raise forbidden("Only the workspace owner or an admin can invite people")
        expires_at = datetime.now(UTC) + timedelta(hours=hours)
        code = new_invite_code()
        await conn.execute(
            workspace_invites.insert().values(
                code=code,
                workspace_id=caller.workspace_id,
                created_by=caller.user_id,
                expires_at=expires_at,
                max_uses=data.max_uses,
            )
        )
    return InviteOut(code=code, expires_at=iso(expires_at) or "", max_uses=data.max_uses, uses=0)


async def list_invites(ctx: AppContext, caller: AccessClaims) -> list[InviteOut]:
    async with ctx.engine.connect() as conn:
        if await workspace_role(conn, caller.workspace_id, caller.user_id) not in MANAGERS:
            raise forbidden("Only the workspace owner or an admin can see invites")
        rows = (
            await conn.execute(
                sa.select(workspace_invites)
                .where(
                    workspace_invites.c.workspace_id == caller.workspace_id,
                    workspace_invites.c.expires_at > sa.func.now(),
                )
                .order_by(workspace_invites.c.created_at)
            )
        ).all()
    return [
        InviteOut(code=r.code, expires_at=iso(r.expires_at) or "", max_uses=r.max_uses, uses=r.uses)
        for r in rows
    ]


async def revoke_invite(ctx: AppContext, caller: AccessClaims, code: str) -> None:
    async with ctx.engine.begin() as conn:
        if await workspace_role(conn, caller.workspace_id, caller.user_id) not in MANAGERS:
            raise forbidden("Only the workspace owner or an admin can revoke invites")
        deleted = await conn.scalar(
            workspace_invites.delete()
            .where(workspace_invites.c.code == code, workspace_invites.c.workspace_id == caller.workspace_id)
            .returning(workspace_invites.c.code)
        )
    if deleted is None:
        raise not_found("Invite not found")


async def list_workspaces(ctx: AppContext, caller: AccessClaims) -> list[WorkspaceMembershipOut]:
    async with ctx.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(workspaces.c.id, workspaces.c.name, workspaces.c.owner_id, workspace_members.c.role)
                .join(workspace_members, workspace_members.c.workspace_id == workspaces.c.id)
                .where(workspace_members.c.user_id == caller.user_id)
                .order_by(workspaces.c.id)
            )
        ).all()
    return [WorkspaceMembershipOut(id=r.id, name=r.name, owner_id=r.owner_id, role=r.role) for r in rows]


async def _session_in(
    ctx: AppContext, conn: AsyncConnection, user_id: int, workspace: Any, user_agent: str | None
) -> SessionOut:
    user = (await conn.execute(sa.select(users).where(users.c.id == user_id))).one()
    # The next sign-in lands where the user last was.
    await conn.execute(users.update().where(users.c.id == user_id).values(default_workspace_id=workspace.id))
    return await issue_session(ctx, conn, user, workspace, user_agent=user_agent)


async def create_workspace(
    ctx: AppContext, caller: AccessClaims, name: str, user_agent: str | None
) -> SessionOut:
    cleaned = name.strip()
    if not cleaned:
        raise validation_error("name must not be blank", "name")
    async with ctx.engine.begin() as conn:
        workspace = await create_workspace_row(conn, cleaned, caller.user_id)
        return await _session_in(ctx, conn, caller.user_id, workspace, user_agent)


async def switch_workspace(
    ctx: AppContext, caller: AccessClaims, workspace_id: int, user_agent: str | None
) -> SessionOut:
    async with ctx.engine.begin() as conn:
        workspace = (
            await conn.execute(
                sa.select(workspaces)
                .join(workspace_members, workspace_members.c.workspace_id == workspaces.c.id)
                .where(workspaces.c.id == workspace_id, workspace_members.c.user_id == caller.user_id)
            )
        ).one_or_none()
        if workspace is None:
            raise not_found("Workspace not found")
        return await _session_in(ctx, conn, caller.user_id, workspace, user_agent)


async def join_workspace(
    ctx: AppContext, caller: AccessClaims, code: str, user_agent: str | None
) -> SessionOut:
    async with ctx.engine.begin() as conn:
        workspace = await redeem_invite(conn, code.strip(), caller.user_id)
        return await _session_in(ctx, conn, caller.user_id, workspace, user_agent)


async def set_role(
    ctx: AppContext, caller: AccessClaims, user_id: int, data: SetRoleRequest
) -> WorkspaceUserOut:
    async with ctx.engine.begin() as conn:
        if await workspace_role(conn, caller.workspace_id, caller.user_id) != "owner":
            raise forbidden("Only the workspace owner can change roles")
        current = await workspace_role(conn, caller.workspace_id, user_id)
        if current is None:
            raise not_found("No such member in this workspace")
        if current == "owner":
            raise forbidden("The owner's role cannot be changed")
        changed = await conn.scalar(
            workspace_members.update()
            .where(
                workspace_members.c.workspace_id == caller.workspace_id,
                workspace_members.c.user_id == user_id,
                workspace_members.c.role != "owner",
            )
            .values(role=data.role.value)
            .returning(workspace_members.c.user_id)
        )
        if changed is None:  # removed (or made owner) since it was read
            raise not_found("No such member in this workspace")
        row = (
            await conn.execute(
                sa.select(users, sa.literal(data.role.value).label("role")).where(users.c.id == user_id)
            )
        ).one()
    return workspace_user_out(row, caller.workspace_id)


async def remove_member(ctx: AppContext, caller: AccessClaims, user_id: int) -> RemovedMemberOut:
    """Take someone out of the workspace, or leave it (``user_id`` = the caller).

    The owner removes anyone but themselves; an admin removes plain members; anyone but the owner leaves;
    the workspace's bot stays. In one transaction: the membership goes, the person leaves every chat of
    the workspace but their direct messages (which stay whole for the other person; as everywhere, a chat
    they owned passes to its earliest admin, else its earliest member), their sessions in this workspace
    are revoked, and they are recorded as a former member so their messages keep a name. An access token
    already issued runs out within its lifetime and then opens nothing here; until then it reaches only
    their direct messages.
    """
    async with ctx.engine.begin() as conn:
        # Both memberships are locked, in user id order (two removals of each other cannot deadlock), and
        # before any chat row: adding people to chats share-locks these rows first too, so one waits for
        # the other and no chat gains the person after they have gone. The caller's role is read under the
        # lock, so an admin demoted or removed meanwhile removes nobody.
        locked = {
            row.user_id: row
            for row in (
                await conn.execute(
                    sa.select(workspace_members.c.user_id, workspace_members.c.role, users.c.is_bot)
                    .join(users, users.c.id == workspace_members.c.user_id)
                    .where(
                        workspace_members.c.workspace_id == caller.workspace_id,
                        workspace_members.c.user_id.in_({caller.user_id, user_id}),
                    )
                    .order_by(workspace_members.c.user_id)
                    .with_for_update(of=workspace_members)
                )
            ).all()
        }
        if caller.user_id not in locked:
            raise forbidden("You are no longer a member of this workspace")
        caller_role = locked[caller.user_id].role
        target = locked.get(user_id)
        if target is None:
            raise not_found("No such member in this workspace")
        if target.role == "owner":
            raise forbidden("The workspace owner cannot leave or be removed")
        if target.is_bot:
            raise forbidden("The workspace's assistant cannot be removed")
        leaving = user_id == caller.user_id
        if not leaving and caller_role not in MANAGERS:
            raise forbidden("Only the workspace owner or an admin can remove people")
        if not leaving and target.role == "admin" and caller_role != "owner":
            raise forbidden("Only the workspace owner can remove an admin")
        await conn.execute(
            workspace_members.delete().where(
                workspace_members.c.workspace_id == caller.workspace_id,
                workspace_members.c.user_id == user_id,
            )
        )
        chats_left = await _leave_workspace_chats(conn, caller, user_id)
        await conn.execute(
            pg_insert(workspace_former_members)
            .values(
                workspace_id=caller.workspace_id,
                user_id=user_id,
                removed_by=None if leaving else caller.user_id,
            )
            .on_conflict_do_update(
                index_elements=[workspace_former_members.c.workspace_id, workspace_former_members.c.user_id],
                set_={"removed_by": None if leaving else caller.user_id, "left_at": sa.func.now()},
            )
        )
        await conn.execute(
            refresh_tokens.update()
            .where(
                refresh_tokens.c.user_id == user_id,
                refresh_tokens.c.workspace_id == caller.workspace_id,
                refresh_tokens.c.revoked_at.is_(None),
            )
            .values(revoked_at=sa.func.now())
        )
        await record(
            conn,
            events.new_event(
                events.WORKSPACE_MEMBER_REMOVED,
                workspace_id=caller.workspace_id,
                actor_id=caller.user_id,
                data={
                    "workspace_id": caller.workspace_id,
                    "user_id": user_id,
                    "removed_by": None if leaving else caller.user_id,
                },
            ),
        )
    ctx.publisher.wake()
    return RemovedMemberOut(user_id=user_id, chats_left=chats_left)


async def _leave_workspace_chats(conn: AsyncConnection, caller: AccessClaims, user_id: int) -> list[int]:
    """Take ``user_id`` out of the workspace's chats but direct messages; the chat rows are locked in id
    order, as membership changes lock them, so two removals cannot deadlock."""
    rows = (
        await conn.execute(
            sa.select(chats.c.id, chats.c.owner_id)
            .join(chat_members, chat_members.c.chat_id == chats.c.id)
            .where(
                chat_members.c.user_id == user_id,
                chats.c.workspace_id == caller.workspace_id,
                chats.c.chat_type != "Single",
            )
            .order_by(chats.c.id)
            .with_for_update(of=chats)
        )
    ).all()
    left = []
    for chat in rows:
        if await drop_member(conn, caller.workspace_id, caller.user_id, chat, user_id):
            left.append(chat.id)
    return left


async def list_former_members(ctx: AppContext, caller: AccessClaims) -> list[FormerMemberOut]:
    async with ctx.engine.connect() as conn:
        await require_workspace_member(conn, caller)
        rows = (
            await conn.execute(
                sa.select(
                    users.c.id,
                    users.c.fullname,
                    workspace_former_members.c.left_at,
                    workspace_former_members.c.removed_by,
                )
                .join(workspace_former_members, workspace_former_members.c.user_id == users.c.id)
                .where(workspace_former_members.c.workspace_id == caller.workspace_id)
                .order_by(workspace_former_members.c.left_at, users.c.id)
            )
        ).all()
    return [
        FormerMemberOut(id=r.id, fullname=r.fullname, left_at=iso(r.left_at) or "", removed_by=r.removed_by)
        for r in rows
    ]
