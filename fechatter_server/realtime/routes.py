from __future__ import annotations

from typing import Annotated

from litestar import Router, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.realtime import service
from fechatter_server.realtime.schemas import OnlineUserOut, PresenceOut, SetPresenceRequest

ChatId = Annotated[int, Parameter(ge=1, le=2**62, description="Chat id")]


@post(
    "/chat/{chat_id:int}/typing",
    status_code=HTTP_200_OK,
    summary="Say the caller is typing in a chat; the other members get typing_started",
    description=(
        "Call it as the user types (on every keystroke is fine). The other members' SSE streams get "
        "`typing_started {chat_id, user_id}` once, and `typing_stopped` when no call came for 6 s or when "
        "the caller sends a message in the chat. Calls within 2 s of an accepted one are absorbed (they "
        "answer `{typing: true, announced: false}` without renewing). Typing events are not kept for "
        "resume. Members only: 404 for a chat outside the caller's workspace, 403 for a non-member."
    ),
)
async def typing(ctx: AppContext, caller: AccessClaims, chat_id: ChatId) -> Success[dict[str, bool]]:
    announced = await service.typing(ctx, caller, chat_id)
    return ok({"typing": True, "announced": announced})


@post(
    "/presence",
    status_code=HTTP_200_OK,
    summary="Set the caller's presence to away or back to online",
    description=(
        "Presence comes from live SSE connections: a user with one is `online`, without any `offline`. A "
        "client marks the user `away` (for example after some minutes without input) and `online` again; "
        "an away user shows as away only while connected, and the mark lapses after an hour or when "
        "the user goes offline. Workspace members get `user_presence` on every change."
    ),
)
async def set_presence(
    ctx: AppContext, caller: AccessClaims, data: SetPresenceRequest
) -> Success[PresenceOut]:
    return ok(await service.set_presence(ctx, caller, data.status))


@get(
    "/presence",
    summary="Presence (online, away, offline) of every member of the caller's workspace",
)
async def list_presence(ctx: AppContext, caller: AccessClaims) -> Success[list[PresenceOut]]:
    return ok(await service.list_presence(ctx, caller))


@get(
    "/online-users",
    summary="Who is online or away: in one chat, or in the caller's workspace",
    description=(
        "The route the original Fechatter's notify server had. With `chat_id`: the chat's members who are "
        "online or away (members only: 404 for a chat outside the workspace, 403 for a non-member). "
        "Without: the people of the caller's workspace who are. The caller is never listed. "
        "`workspace_id`, when given, must be the caller's (403 otherwise). `GET /api/presence` gives "
        "everyone's status, offline included."
    ),
)
async def online_users(
    ctx: AppContext,
    caller: AccessClaims,
    chat_id: Annotated[int | None, Parameter(ge=1, le=2**62, description="Chat id")] = None,
    workspace_id: Annotated[int | None, Parameter(ge=1, le=2**62, description="Workspace id")] = None,
) -> Success[list[OnlineUserOut]]:
    return ok(await service.online_users(ctx, caller, chat_id=chat_id, workspace_id=workspace_id))


router = Router(path="/api", route_handlers=[typing, set_presence, list_presence], tags=["realtime"])
# Outside /api, where the original served it.
online_users_router = Router(path="/", route_handlers=[online_users], tags=["realtime"])
