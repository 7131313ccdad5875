from __future__ import annotations

from typing import Annotated

from litestar import Router, get
from litestar.params import Parameter

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.context import AppContext
from fechatter_server.search import service
from fechatter_server.views import SearchHitOut


@get(
    "/search/messages",
    summary="Search messages of the caller's chats; best match first, with highlighted snippets",
    description=(
        '`q` holds words, `"quoted phrases"` and filters: `from:<user_id>`, `in:<chat_id>`, '
        "`before:YYYY-MM-DD`, `after:YYYY-MM-DD` (both exclusive of the day, UTC) and `has:file`. Every "
        "word and phrase must occur in the message, case-insensitively, as a word, prefix or substring "
        "(so text without spaces such as Chinese or Japanese is found too); a word also matches its "
        "English stem. Order: messages where every word occurs as a whole word (or its stem) and every "
        "phrase as words in a row come first, the best match first and the newest among equals; then "
        "messages that match only inside longer words, newest first. `from:` and `in:` may repeat (any of "
        "them). A query of filters only lists matching "
        "messages newest first. Only chats the caller is a member of in the token's workspace are "
        "searched (or just `chat_id`: 404 outside the workspace, 403 for a non-member); an `in:` chat the "
        "caller is not in gives no results. Deleted messages are never found; an edited message is found "
        "by its new text. `highlight` is the message text (a window around the first match, `…` where "
        "cut), HTML-escaped, with matches in `<mark>`…`</mark>`. Paging: `limit` (1-100, default 20) and "
        "`offset` (up to 1000); `meta` = `{limit, offset, has_more, next_offset, engine}`. An empty `q`, "
        "one over 512 characters or with more than 16 words or 8 filters, a bad id or date: 400 "
        "`validation_error` on `q`."
    ),
)
async def search_messages(
    ctx: AppContext,
    caller: AccessClaims,
    q: Annotated[str | None, Parameter(description="Words, phrases and filters")] = None,
    chat_id: Annotated[int | None, Parameter(ge=1, le=2**62, description="Search only this chat")] = None,
    limit: Annotated[int | None, Parameter(ge=1, le=2**31, description="Results per page")] = None,
    offset: Annotated[int, Parameter(ge=0, le=2**31, description="Results to skip")] = 0,
) -> Success[list[SearchHitOut]]:
    hits, meta = await service.search_messages(ctx, caller, q, chat_id=chat_id, limit=limit, offset=offset)
    return ok(hits, meta=meta)


router = Router(path="/api", route_handlers=[search_messages], tags=["search"])
