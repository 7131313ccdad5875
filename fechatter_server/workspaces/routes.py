from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Router, delete, get, patch, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.views import (
    FormerMemberOut,
    InviteOut,
    RemovedMemberOut,
    SessionOut,
    WorkspaceMembershipOut,
    WorkspaceUserOut,
)
from fechatter_server.workspaces import service
from fechatter_server.workspaces.schemas import (
    CreateInviteRequest,
    CreateWorkspaceRequest,
    JoinWorkspaceRequest,
    SetRoleRequest,
)

WorkspaceId = Annotated[int, Parameter(ge=1, le=2**62)]


@get("/users", summary="Members of the caller's workspace (the bot included), each with their role in it")
async def list_users(ctx: AppContext, caller: AccessClaims) -> Success[list[WorkspaceUserOut]]:
    return ok(await service.list_users(ctx, caller))


@post(
    "/workspace/invites",
    status_code=HTTP_201_CREATED,
    summary="Create an invite code (owner or admin)",
    description="Optional max_uses (default: unlimited) and expires_in_hours (default: a week).",
)
async def create_invite(
    ctx: AppContext, caller: AccessClaims, data: CreateInviteRequest | None = None
) -> Success[InviteOut]:
    return ok(await service.create_invite(ctx, caller, data or CreateInviteRequest()))


@get("/workspace/invites", summary="Invites of the workspace that have not expired (owner or admin)")
async def list_invites(ctx: AppContext, caller: AccessClaims) -> Success[list[InviteOut]]:
    return ok(await service.list_invites(ctx, caller))


@delete("/workspace/invites/{code:str}", status_code=HTTP_200_OK, summary="Revoke an invite (owner or admin)")
async def revoke_invite(
    ctx: AppContext, caller: AccessClaims, code: Annotated[str, Parameter(max_length=64)]
) -> Success[dict[str, str]]:
    await service.revoke_invite(ctx, caller, code)
    return ok({"code": code})


@patch("/workspace/members/{user_id:int}", summary="Make a member an admin or a plain member (owner only)")
async def set_role(
    ctx: AppContext, caller: AccessClaims, user_id: WorkspaceId, data: SetRoleRequest
) -> Success[WorkspaceUserOut]:
    return ok(await service.set_role(ctx, caller, user_id, data))


@delete(
    "/workspace/members/{user_id:int}",
    status_code=HTTP_200_OK,
    summary="Remove someone from the workspace, or leave it (your own id)",
    description=(
        "The owner removes anyone but themselves; an admin removes plain members; anyone but the owner "
        "leaves; the workspace's bot stays. The person leaves every chat of the workspace except their "
        "direct messages, which stay whole for the other person (a chat they owned passes to its earliest "
        "admin, else its earliest member). Their refresh tokens for this workspace are revoked at once; an "
        "access token already issued runs out within its lifetime (15 minutes by default) and until then "
        "reaches only their direct messages. Their messages stay, and keep their name through "
        "GET /api/workspace/former-members. Their open streams get `workspace_member_removed`. "
        "An invite brings them back."
    ),
)
async def remove_member(
    ctx: AppContext, caller: AccessClaims, user_id: WorkspaceId
) -> Success[RemovedMemberOut]:
    return ok(await service.remove_member(ctx, caller, user_id))


@get(
    "/workspace/former-members",
    summary="People who left the workspace or were removed from it, for the names on their messages",
)
async def list_former_members(ctx: AppContext, caller: AccessClaims) -> Success[list[FormerMemberOut]]:
    return ok(await service.list_former_members(ctx, caller))


@get("/workspaces", summary="Every workspace the caller belongs to, with their role in it")
async def list_workspaces(ctx: AppContext, caller: AccessClaims) -> Success[list[WorkspaceMembershipOut]]:
    return ok(await service.list_workspaces(ctx, caller))


@post(
    "/workspaces", status_code=HTTP_201_CREATED, summary="Create another workspace; returns a session in it"
)
async def create_workspace(
    ctx: AppContext, caller: AccessClaims, data: CreateWorkspaceRequest, request: Request[Any, Any, Any]
) -> Success[SessionOut]:
    return ok(await service.create_workspace(ctx, caller, data.name, request.headers.get("user-agent")))


@post("/workspaces/join", status_code=HTTP_200_OK, summary="Join another workspace with an invite code")
async def join_workspace(
    ctx: AppContext, caller: AccessClaims, data: JoinWorkspaceRequest, request: Request[Any, Any, Any]
) -> Success[SessionOut]:
    return ok(await service.join_workspace(ctx, caller, data.invite_code, request.headers.get("user-agent")))


@post(
    "/workspaces/{workspace_id:int}/switch",
    status_code=HTTP_200_OK,
    summary="A new session scoped to another of the caller's workspaces",
)
async def switch_workspace(
    ctx: AppContext, caller: AccessClaims, workspace_id: WorkspaceId, request: Request[Any, Any, Any]
) -> Success[SessionOut]:
    return ok(await service.switch_workspace(ctx, caller, workspace_id, request.headers.get("user-agent")))


router = Router(
    path="/api",
    route_handlers=[
        list_users,
        create_invite,
        list_invites,
        revoke_invite,
        set_role,
        remove_member,
        list_former_members,
        list_workspaces,
        create_workspace,
        join_workspace,
        switch_workspace,
    ],
    tags=["workspaces"],
)
