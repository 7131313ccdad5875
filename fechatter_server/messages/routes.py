from __future__ import annotations

from typing import Annotated

from litestar import Response, Router, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.messages import service
from fechatter_server.messages.schemas import SendMessageRequest
from fechatter_server.views import MessageOut

ChatId = Annotated[int, Parameter(ge=1, le=2**62, description="Chat id")]
Seq = Annotated[int | None, Parameter(ge=0, le=2**62)]


@post(
    "/chat/{chat_id:int}/messages",
    status_code=HTTP_201_CREATED,
    summary="Send a message; a retry with the same idempotency key returns the original (200)",
)
async def send_message(
    ctx: AppContext,
    caller: AccessClaims,
    chat_id: ChatId,
    data: SendMessageRequest,
    idempotency_key: Annotated[str | None, Parameter(header="Idempotency-Key", max_length=128)] = None,
) -> Response[Success[MessageOut]]:
    message, created = await service.send_message(ctx, caller, chat_id, data, idempotency_key)
    return Response(ok(message), status_code=HTTP_201_CREATED if created else HTTP_200_OK)


@get("/chat/{chat_id:int}/messages", summary="Page through a chat's messages by seq (ascending order)")
async def list_messages(
    ctx: AppContext,
    caller: AccessClaims,
    chat_id: ChatId,
    limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    before: Seq = None,
    after: Seq = None,
) -> Success[list[MessageOut]]:
    items, has_more = await service.list_messages(
        ctx, caller, chat_id, limit=limit, before=before, after=after
    )
    return ok(items, meta={"has_more": has_more})


router = Router(path="/api", route_handlers=[send_message, list_messages], tags=["messages"])
