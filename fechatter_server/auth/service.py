"""Sign-up, sign-in, refresh-token rotation with family revocation, and logout."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from fechatter_core import ratelimit
from fechatter_core.db.schema import (
    refresh_tokens,
    users,
    workspace_former_members,
    workspace_invites,
    workspace_members,
    workspaces,
)
from fechatter_core.errors import ApiError, conflict, forbidden, unauthorized, validation_error
from fechatter_core.security import (
    AccessClaims,
    hash_password,
    hash_token,
    issue_access_token,
    new_refresh_token,
    verify_password,
)
from fechatter_server.auth.schemas import ChangePasswordRequest, SigninRequest, SignupRequest
from fechatter_server.context import AppContext
from fechatter_server.views import SessionOut, user_out, workspace_out

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _clean_text(value: str, field: str) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise validation_error(f"{field} must not be blank", field)
    if any(ord(ch) < 32 for ch in cleaned):
        raise validation_error(f"{field} must not contain control characters", field)
    return cleaned


async def create_workspace_row(conn: AsyncConnection, name: str, owner_id: int) -> Any:
    workspace = (
        await conn.execute(workspaces.insert().values(name=name, owner_id=owner_id).returning(*workspaces.c))
    ).one()
    # Every workspace has its assistant as a member, so it can be listed and added to chats.
    bot_id = await conn.scalar(
        users.insert()
        .values(
            email=f"bot+{workspace.id}@fechatter.invalid",
            fullname="Fechatter Bot",
            password_hash=None,
            is_bot=True,
            default_workspace_id=workspace.id,
        )
        .returning(users.c.id)
    )
    await conn.execute(
        workspace_members.insert(),
        [
            {"workspace_id": workspace.id, "user_id": owner_id, "role": "owner"},
            {"workspace_id": workspace.id, "user_id": bot_id, "role": "member"},
        ],
    )
    await conn.execute(workspaces.update().where(workspaces.c.id == workspace.id).values(bot_user_id=bot_id))
    return workspace


async def redeem_invite(conn: AsyncConnection, code: str, user_id: int) -> Any:
    """The invite's workspace, joined. A member already just goes there (the invite is not used up, even
    when it has expired since). The invite row is locked first, so two joins with it by one person (two
    tabs) take turns, and the second finds the membership the first made."""
    invite = (
        await conn.execute(
            sa.select(workspace_invites).where(workspace_invites.c.code == code).with_for_update()
        )
    ).one_or_none()
    if invite is None:
        raise validation_error("The invite code is unknown or has expired", "invite_code")
    workspace = (
        await conn.execute(sa.select(workspaces).where(workspaces.c.id == invite.workspace_id))
    ).one()
    member = await conn.scalar(
        sa.select(workspace_members.c.user_id).where(
            workspace_members.c.workspace_id == invite.workspace_id, workspace_members.c.user_id == user_id
        )
    )
    if member is not None:
        return workspace
    if invite.expires_at <= datetime.now(UTC) or (
        invite.max_uses is not None and invite.uses >= invite.max_uses
    ):
        raise validation_error("The invite code is unknown or has expired", "invite_code")
    # Another invite to the same workspace may be joining this person at the same moment: then the
    # membership is theirs already and this invite is not used.
    joined = await conn.scalar(
        pg_insert(workspace_members)
        .values(workspace_id=invite.workspace_id, user_id=user_id)
        .on_conflict_do_nothing()
        .returning(workspace_members.c.user_id)
    )
    if joined is None:
        return workspace
    await conn.execute(
        workspace_invites.update().where(workspace_invites.c.code == code).values(uses=invite.uses + 1)
    )
    # Back again: no longer a former member.
    await conn.execute(
        workspace_former_members.delete().where(
            workspace_former_members.c.workspace_id == invite.workspace_id,
            workspace_former_members.c.user_id == user_id,
        )
    )
    return workspace


async def issue_session(
    ctx: AppContext,
    conn: AsyncConnection,
    user: Any,
    workspace: Any,
    *,
    family_id: uuid.UUID | None = None,
    user_agent: str | None = None,
) -> SessionOut:
    auth = ctx.settings.auth
    raw = new_refresh_token()
    await conn.execute(
        refresh_tokens.insert().values(
            user_id=user.id,
            workspace_id=workspace.id,
            family_id=family_id or uuid.uuid4(),
            token_hash=hash_token(raw),
            expires_at=datetime.now(UTC) + timedelta(seconds=auth.refresh_ttl_seconds),
            user_agent=(user_agent or "")[:256] or None,
        )
    )
    return SessionOut(
        access_token=issue_access_token(auth, user.id, workspace.id),
        refresh_token=raw,
        token_type="Bearer",  # noqa: S106 - the scheme name, not a secret
        expires_in=auth.access_ttl_seconds,
        user=user_out(user, workspace.id),
        workspace=workspace_out(workspace),
    )


async def signup(ctx: AppContext, data: SignupRequest, user_agent: str | None) -> SessionOut:
    email = data.email.strip()
    if not _EMAIL.match(email):
        raise validation_error("email is not a valid address", "email")
    fullname = _clean_text(data.fullname, "fullname")
    workspace_name = _clean_text(data.workspace_name, "workspace_name") if data.workspace_name else None
    password_hash = hash_password(data.password)
    async with ctx.engine.begin() as conn:
        try:
            async with conn.begin_nested():
                user = (
                    await conn.execute(
                        users.insert()
                        .values(email=email, fullname=fullname, password_hash=password_hash)
                        .returning(*users.c)
                    )
                ).one()
        except IntegrityError:
            raise conflict("email_taken", "An account with this email already exists", "email") from None
        if data.invite_code:
            workspace = await redeem_invite(conn, data.invite_code.strip(), user.id)
        else:
            workspace = await create_workspace_row(conn, workspace_name or f"{fullname}'s workspace", user.id)
        await conn.execute(
            users.update().where(users.c.id == user.id).values(default_workspace_id=workspace.id)
        )
        return await issue_session(ctx, conn, user, workspace, user_agent=user_agent)


def _failures_key(email: str) -> str:
    # Hashed: the address itself never lands in Redis.
    return "rl:signin:fail:" + hashlib.sha256(email.encode()).hexdigest()[:32]


async def signin(ctx: AppContext, data: SigninRequest, user_agent: str | None, client_ip: str) -> SessionOut:
    limits = ctx.settings.limits
    email = data.email.strip().lower()
    per_ip = await ratelimit.hit(
        ctx.redis,
        f"rl:signin:ip:{client_ip}",
        limit=limits.signin_per_ip,
        window=limits.signin_per_ip_window_seconds,
    )
    per_ip.raise_if_denied("Too many sign-in attempts from this address; try again later")
    failures_key = _failures_key(email)
    failures = {"limit": limits.signin_failures_per_account, "window": limits.signin_failures_window_seconds}
    locked = await ratelimit.peek(ctx.redis, failures_key, **failures)
    locked.raise_if_denied("Too many failed sign-ins for this account; try again later")
    async with ctx.engine.begin() as conn:
        user = (
            await conn.execute(sa.select(users).where(sa.func.lower(users.c.email) == email))
        ).one_or_none()
        # Always verify (against a dummy hash when the email is unknown) so timing reveals nothing.
        if not verify_password(user.password_hash if user else None, data.password) or user is None:
            await ratelimit.hit(ctx.redis, failures_key, **failures)
            raise ApiError(401, "invalid_credentials", "Email or password is incorrect")
        await ratelimit.clear(ctx.redis, failures_key)
        if data.invite_code:
            # Someone with an account joins (or goes back to) the invite's workspace as they sign in.
            workspace = await redeem_invite(conn, data.invite_code.strip(), user.id)
            await conn.execute(
                users.update().where(users.c.id == user.id).values(default_workspace_id=workspace.id)
            )
            return await issue_session(ctx, conn, user, workspace, user_agent=user_agent)
        workspace = (
            await conn.execute(
                sa.select(workspaces)
                .join(workspace_members, workspace_members.c.workspace_id == workspaces.c.id)
                .where(workspace_members.c.user_id == user.id)
                .order_by((workspaces.c.id == user.default_workspace_id).desc(), workspaces.c.id)
                .limit(1)
            )
        ).one_or_none()
        if workspace is None:
            # Told only to someone who has just given the right password.
            raise ApiError(
                403,
                "no_workspace",
                "This account no longer belongs to any workspace: sign in with an invite code to join one",
            )
        return await issue_session(ctx, conn, user, workspace, user_agent=user_agent)


async def refresh(ctx: AppContext, raw_token: str, user_agent: str | None) -> SessionOut:
    now = datetime.now(UTC)
    revoked_family = False
    async with ctx.engine.begin() as conn:
        token = (
            await conn.execute(
                sa.select(refresh_tokens)
                .where(refresh_tokens.c.token_hash == hash_token(raw_token))
                .with_for_update()
            )
        ).one_or_none()
        if token is None or token.revoked_at is not None or token.expires_at <= now:
            raise unauthorized("The refresh token is invalid or has expired")
        if token.rotated_at is not None:
            grace = timedelta(seconds=ctx.settings.auth.refresh_reuse_grace_seconds)
            if now - token.rotated_at > grace:
                # A rotated token came back: someone holds a copy. End every session of that family.
                await conn.execute(
                    refresh_tokens.update()
                    .where(
                        refresh_tokens.c.family_id == token.family_id, refresh_tokens.c.revoked_at.is_(None)
                    )
                    .values(revoked_at=now)
                )
                revoked_family = True
            else:
                raise unauthorized("The refresh token was already used")
        else:
            await conn.execute(
                refresh_tokens.update().where(refresh_tokens.c.id == token.id).values(rotated_at=now)
            )
            user = (await conn.execute(sa.select(users).where(users.c.id == token.user_id))).one()
            member = await conn.scalar(
                sa.select(workspace_members.c.user_id).where(
                    workspace_members.c.workspace_id == token.workspace_id,
                    workspace_members.c.user_id == token.user_id,
                )
            )
            if member is None:
                raise unauthorized("You are no longer a member of this workspace")
            workspace = (
                await conn.execute(sa.select(workspaces).where(workspaces.c.id == token.workspace_id))
            ).one()
            return await issue_session(
                ctx, conn, user, workspace, family_id=token.family_id, user_agent=user_agent
            )
    assert revoked_family
    raise unauthorized("The refresh token was already used; every session of this sign-in was ended")


async def logout(ctx: AppContext, user_id: int, raw_token: str | None) -> None:
    if not raw_token:
        return
    async with ctx.engine.begin() as conn:
        family = await conn.scalar(
            sa.select(refresh_tokens.c.family_id).where(
                refresh_tokens.c.token_hash == hash_token(raw_token), refresh_tokens.c.user_id == user_id
            )
        )
        if family is not None:
            await conn.execute(
                refresh_tokens.update()
                .where(refresh_tokens.c.family_id == family, refresh_tokens.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )


async def _revoke_all(conn: AsyncConnection, user_id: int) -> None:
    await conn.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


async def logout_all(ctx: AppContext, user_id: int) -> None:
    """Ends every session: no refresh token works any more (access tokens lapse within minutes)."""
    async with ctx.engine.begin() as conn:
        await _revoke_all(conn, user_id)


async def change_password(
    ctx: AppContext, caller: AccessClaims, data: ChangePasswordRequest, user_agent: str | None
) -> SessionOut:
    """Every other session ends; the caller gets a fresh one."""
    if data.new_password == data.current_password:
        raise validation_error("The new password must differ from the current one", "new_password")
    new_hash = hash_password(data.new_password)
    async with ctx.engine.begin() as conn:
        user = (
            await conn.execute(sa.select(users).where(users.c.id == caller.user_id).with_for_update())
        ).one()
        if not verify_password(user.password_hash, data.current_password):
            raise ApiError(401, "invalid_credentials", "The current password is incorrect")
        # The new session is for the token's workspace: only while the caller still belongs to it.
        workspace = (
            await conn.execute(
                sa.select(workspaces)
                .join(workspace_members, workspace_members.c.workspace_id == workspaces.c.id)
                .where(workspaces.c.id == caller.workspace_id, workspace_members.c.user_id == caller.user_id)
            )
        ).one_or_none()
        if workspace is None:
            raise forbidden("You are no longer a member of this workspace")
        await conn.execute(users.update().where(users.c.id == user.id).values(password_hash=new_hash))
        await _revoke_all(conn, user.id)
        return await issue_session(ctx, conn, user, workspace, user_agent=user_agent)


def new_invite_code() -> str:
    return secrets.token_urlsafe(12)
