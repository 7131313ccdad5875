from __future__ import annotations

from typing import Annotated

from litestar import Router, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.reads import service
from fechatter_server.reads.schemas import ReadRequest, UnreadCountOut
from fechatter_server.views import ReadStateOut

ChatId = Annotated[int, Parameter(ge=1, le=2**62, description="Chat id")]


@post(
    "/chat/{chat_id:int}/read",
    status_code=HTTP_200_OK,
    summary="Mark a chat read up to a seq; the read position only moves forward",
    description=(
        "Moves the caller's read position in the chat to `seq`. A `seq` lower than (or equal to) the "
        "stored position changes nothing and answers the stored position. A `seq` beyond the chat's last "
        "message is clamped to the chat's `last_seq`, so messages sent later still count as unread. "
        "When the position moves, the caller's other connections get an SSE `message_read` event. "
        "`seq` must be a JSON integer from 0 to 2^62 (no strings, no fractions). Members only: 404 for a "
        "chat outside the caller's workspace, 403 for a non-member."
    ),
)
async def mark_read(
    ctx: AppContext, caller: AccessClaims, chat_id: ChatId, data: ReadRequest
) -> Success[ReadStateOut]:
    return ok(await service.mark_read(ctx, caller, chat_id, data.seq))


@get(
    "/unread-counts",
    summary="Unread message count of every chat the caller is a member of, by chat id",
    description=(
        "Unread = messages after the caller's read position that others sent and that are not deleted: "
        "the same number as `unread_count` in the chat list."
    ),
)
async def unread_counts(ctx: AppContext, caller: AccessClaims) -> Success[list[UnreadCountOut]]:
    return ok(await service.unread_counts(ctx, caller))


router = Router(path="/api", route_handlers=[mark_read, unread_counts], tags=["reads"])
