from __future__ import annotations

from typing import Annotated

from litestar import Router, get
from litestar.params import Parameter

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.mentions import service
from fechatter_server.mentions.schemas import MentionOut

Limit = Annotated[int, Parameter(ge=1, le=200)]


@get(
    "/mentions/unread",
    summary="Messages mentioning the caller that they have not read yet, newest first",
    description=(
        "A mention is written as `<@user_id>` (one member), `@everyone` or `@here` (every member of the "
        "chat; `@here` reaches the same people as `@everyone`). Only members of the chat "
        "are mentioned and never the sender; an edit re-reads the text and a delete drops the mentions. "
        "Unread: the message's seq is after the caller's read position in that chat and it is not deleted. "
        "Each item is `{chat_id, message, mention_type}` with mention_type `user`, `everyone` or `here`."
    ),
)
async def unread_mentions(
    ctx: AppContext, caller: AccessClaims, limit: Limit = 50
) -> Success[list[MentionOut]]:
    return ok(await service.unread_mentions(ctx, caller, limit))


router = Router(path="/api", route_handlers=[unread_mentions], tags=["mentions"])
