from __future__ import annotations

from typing import Annotated, Any

from litestar import Router, delete, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.pins import service
from fechatter_server.pins.schemas import PinOut

ChatId = Annotated[int, Parameter(ge=1, le=2**62, description="Chat id")]
MessageId = Annotated[int, Parameter(ge=1, le=2**62, description="Message id (of a message in this chat)")]

_PIN = "/chat/{chat_id:int}/messages/{message_id:int}/pin"
_WHO = (
    "Any member pins and unpins in a Single or Group chat; in a channel only its owner or an admin (403 "
    "otherwise). Not in an archived chat (409). "
)


@post(
    _PIN,
    status_code=HTTP_200_OK,
    summary="Pin a message; pinning a pinned message changes nothing",
    description=_WHO + "A deleted message cannot be pinned (409); a chat holds at most 100 pins by default "
    "(409 beyond). The answer is `{chat_id, message, pinned_by, pinned_at}`; members get `message_pinned`.",
)
async def pin_message(
    ctx: AppContext, caller: AccessClaims, chat_id: ChatId, message_id: MessageId
) -> Success[PinOut]:
    return ok(await service.pin(ctx, caller, chat_id, message_id))


@delete(
    _PIN,
    status_code=HTTP_200_OK,
    summary="Unpin a message; unpinning one that is not pinned changes nothing",
    description=_WHO + "Members get `message_unpinned` (`{chat_id, message_id, unpinned_by}`), also when a "
    "pinned message is deleted.",
)
async def unpin_message(
    ctx: AppContext, caller: AccessClaims, chat_id: ChatId, message_id: MessageId
) -> Success[dict[str, Any]]:
    return ok(await service.unpin(ctx, caller, chat_id, message_id))


@get(
    "/chat/{chat_id:int}/pins",
    summary="Pinned messages of a chat, newest pin first (members)",
    description="Each item is `{chat_id, message, pinned_by, pinned_at}`. Readable in an archived chat.",
)
async def list_pins(ctx: AppContext, caller: AccessClaims, chat_id: ChatId) -> Success[list[PinOut]]:
    return ok(await service.list_pins(ctx, caller, chat_id))


router = Router(path="/api", route_handlers=[pin_message, unpin_message, list_pins], tags=["pins"])
