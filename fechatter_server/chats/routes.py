from __future__ import annotations

from typing import Annotated

from litestar import Response, Router, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.chats import service
from fechatter_server.chats.schemas import CreateChatRequest
from fechatter_server.context import AppContext
from fechatter_server.views import ChatOut

ChatId = Annotated[int, Parameter(ge=1, le=2**62, description="Chat id")]


@get("/workspace/chats", summary="Chats the caller is a member of, most recent activity first")
async def list_chats(ctx: AppContext, caller: AccessClaims) -> Success[list[ChatOut]]:
    return ok(await service.list_chats(ctx, caller))


@post(
    "/workspace/chats",
    status_code=HTTP_201_CREATED,
    summary="Create a chat; a Single chat that already exists for the pair is returned with 200",
)
async def create_chat(
    ctx: AppContext, caller: AccessClaims, data: CreateChatRequest
) -> Response[Success[ChatOut]]:
    chat, created = await service.create_chat(ctx, caller, data)
    return Response(ok(chat), status_code=HTTP_201_CREATED if created else HTTP_200_OK)


@get("/chat/{chat_id:int}", summary="One chat (members only; anyone in the workspace for a PublicChannel)")
async def get_chat(ctx: AppContext, caller: AccessClaims, chat_id: ChatId) -> Success[ChatOut]:
    return ok(await service.get_chat(ctx, caller, chat_id))


router = Router(path="/api", route_handlers=[list_chats, create_chat, get_chat], tags=["chats"])
