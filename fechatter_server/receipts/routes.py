from __future__ import annotations

from typing import Annotated

from litestar import Router, get
from litestar.params import Parameter

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.receipts import service
from fechatter_server.receipts.schemas import ReceiptsOut

ChatId = Annotated[int, Parameter(ge=1, le=2**62, description="Chat id")]
MessageId = Annotated[int, Parameter(ge=1, le=2**62, description="Message id (of a message in this chat)")]


@get(
    "/chat/{chat_id:int}/messages/{message_id:int}/receipts",
    summary="Who has read a message and who has not (members; chats of up to 50 members)",
    description=(
        "`read_by` lists `{user_id, last_read_seq}` of members whose read position reached the message's "
        "seq, `unread_by` the other members' ids; the sender is in neither. Derived from the read positions "
        "(POST /api/chat/{id}/read), so it always agrees with the unread counts. A chat with more members "
        "than the configured limit (default 50) answers 409 conflict."
    ),
)
async def message_receipts(
    ctx: AppContext, caller: AccessClaims, chat_id: ChatId, message_id: MessageId
) -> Success[ReceiptsOut]:
    return ok(await service.receipts(ctx, caller, chat_id, message_id))


router = Router(path="/api", route_handlers=[message_receipts], tags=["reads"])
