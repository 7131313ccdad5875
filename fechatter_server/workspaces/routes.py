from __future__ import annotations

from litestar import Router, get, post
from litestar.status_codes import HTTP_201_CREATED

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.auth.service import new_invite_code
from fechatter_server.context import AppContext
from fechatter_server.views import InviteOut, UserOut
from fechatter_server.workspaces import service


@get("/users", summary="Members of the caller's workspace (the bot included)")
async def list_users(ctx: AppContext, caller: AccessClaims) -> Success[list[UserOut]]:
    return ok(await service.list_users(ctx, caller))


@post("/workspace/invites", status_code=HTTP_201_CREATED, summary="Create an invite code (owner or admin)")
async def create_invite(ctx: AppContext, caller: AccessClaims) -> Success[InviteOut]:
    return ok(await service.create_invite(ctx, caller, new_invite_code()))


router = Router(path="/api", route_handlers=[list_users, create_invite], tags=["workspaces"])
