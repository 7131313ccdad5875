from __future__ import annotations

from typing import Annotated

from litestar import Router, delete, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.reactions import service
from fechatter_server.reactions.schemas import ReactionRequest
from fechatter_server.views import MessageOut

ChatId = Annotated[int, Parameter(ge=1, le=2**62, description="Chat id")]
MessageId = Annotated[int, Parameter(ge=1, le=2**62, description="Message id (of a message in this chat)")]

_REACTIONS = "/chat/{chat_id:int}/messages/{message_id:int}/reactions"
_RULES = (
    "Members only; not on a deleted message (409) nor in an archived chat (409). `emoji` is a Unicode emoji "
    "(sequences, skin tones, keycaps and flags included) or a short name such as `:+1:` (lowercase letters, "
    "digits, `_`, `+`, `-` between colons), 1-64 characters, no spaces or control characters. The answer is "
    "the message, whose `reactions` lists `{emoji, count, user_ids}` in order of first use. Members get "
    "`reaction_added` / `reaction_removed` (`{chat_id, message_id, user_id, emoji}`) when something changed."
)


@post(
    _REACTIONS,
    status_code=HTTP_200_OK,
    summary="React to a message with an emoji (adding it again changes nothing)",
    description=_RULES + " A message takes a limited number of different emoji (default 50; 409 beyond).",
)
async def add_reaction(
    ctx: AppContext, caller: AccessClaims, chat_id: ChatId, message_id: MessageId, data: ReactionRequest
) -> Success[MessageOut]:
    return ok(await service.react(ctx, caller, chat_id, message_id, data.emoji, add=True))


@delete(
    _REACTIONS,
    status_code=HTTP_200_OK,
    summary="Take back a reaction (body {emoji}); removing one you did not give changes nothing",
    description=_RULES,
)
async def remove_reaction(
    ctx: AppContext, caller: AccessClaims, chat_id: ChatId, message_id: MessageId, data: ReactionRequest
) -> Success[MessageOut]:
    return ok(await service.react(ctx, caller, chat_id, message_id, data.emoji, add=False))


@delete(
    _REACTIONS + "/{emoji:str}",
    status_code=HTTP_200_OK,
    summary="Take back a reaction named in the path (URL-encoded emoji)",
    description=_RULES,
)
async def remove_reaction_by_path(
    ctx: AppContext,
    caller: AccessClaims,
    chat_id: ChatId,
    message_id: MessageId,
    emoji: Annotated[str, Parameter(max_length=256, description="The emoji, URL-encoded")],
) -> Success[MessageOut]:
    return ok(await service.react(ctx, caller, chat_id, message_id, emoji, add=False))


router = Router(
    path="/api", route_handlers=[add_reaction, remove_reaction, remove_reaction_by_path], tags=["reactions"]
)
