from __future__ import annotations

from typing import Annotated

from litestar import Response, Router, delete, get, patch, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.messages import service
from fechatter_server.messages.schemas import EditMessageRequest, SendMessageRequest
from fechatter_server.views import MessageEditOut, MessageOut

ChatId = Annotated[int, Parameter(ge=1, le=2**62, description="Chat id")]
MessageId = Annotated[int, Parameter(ge=1, le=2**62, description="Message id (of a message in this chat)")]
Seq = Annotated[int | None, Parameter(ge=0, le=2**62)]
Limit = Annotated[int, Parameter(ge=1, le=200)]

_ONE_MESSAGE = "/chat/{chat_id:int}/messages/{message_id:int}"


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
    limit: Limit = 50,
    before: Seq = None,
    after: Seq = None,
) -> Success[list[MessageOut]]:
    items, has_more = await service.list_messages(
        ctx, caller, chat_id, limit=limit, before=before, after=after
    )
    return ok(items, meta={"has_more": has_more})


@patch(
    _ONE_MESSAGE,
    summary="Edit a message (sender only); the previous text is kept in its history",
    description=(
        "The content is trimmed and must be 1-4000 characters. Sending the current text again changes "
        "nothing (no history entry, no event). A deleted message cannot be edited (409 conflict)."
    ),
)
async def edit_message(
    ctx: AppContext, caller: AccessClaims, chat_id: ChatId, message_id: MessageId, data: EditMessageRequest
) -> Success[MessageOut]:
    return ok(await service.edit_message(ctx, caller, chat_id, message_id, data))


@delete(
    _ONE_MESSAGE,
    status_code=HTTP_200_OK,  # answers the deleted message, unlike a bare 204
    summary="Delete a message (sender, or chat owner/admin); it keeps its seq and reads as deleted",
    description=(
        "A soft delete: the message stays in the sequence with deleted: true and empty content, and its "
        "edit history is erased. Deleting it again answers the same message."
    ),
)
async def delete_message(
    ctx: AppContext, caller: AccessClaims, chat_id: ChatId, message_id: MessageId
) -> Success[MessageOut]:
    return ok(await service.delete_message(ctx, caller, chat_id, message_id))


@get(
    _ONE_MESSAGE + "/history",
    summary="Earlier versions of a message, oldest first (members)",
    description=(
        "Each entry is a text the message had before an edit, with edited_at = when that edit replaced it. "
        "The current version is the message itself (GET /api/chat/{chat_id}/messages). A deleted message "
        "has no history: the list is empty."
    ),
)
async def message_history(
    ctx: AppContext, caller: AccessClaims, chat_id: ChatId, message_id: MessageId
) -> Success[list[MessageEditOut]]:
    return ok(await service.message_history(ctx, caller, chat_id, message_id))


@get(
    _ONE_MESSAGE + "/replies",
    summary="Messages replying to a message, ascending seq (members)",
    description="after=S gives the first limit replies with seq > S; meta.has_more says whether more follow.",
)
async def list_replies(
    ctx: AppContext,
    caller: AccessClaims,
    chat_id: ChatId,
    message_id: MessageId,
    limit: Limit = 50,
    after: Seq = None,
) -> Success[list[MessageOut]]:
    items, has_more = await service.list_replies(ctx, caller, chat_id, message_id, limit=limit, after=after)
    return ok(items, meta={"has_more": has_more})


router = Router(
    path="/api",
    route_handlers=[send_message, list_messages, edit_message, delete_message, message_history, list_replies],
    tags=["messages"],
)
