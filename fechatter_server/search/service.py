"""Message search: the rules of GET /api/search/messages, whichever engine answers."""

from __future__ import annotations

from typing import Any

from fechatter_core.errors import validation_error
from fechatter_core.security import AccessClaims
from fechatter_server.chats.queries import require_member
from fechatter_server.context import AppContext
from fechatter_server.search.query import parse_query
from fechatter_server.views import SearchHitOut


async def search_messages(
    ctx: AppContext,
    caller: AccessClaims,
    q: str | None,
    *,
    chat_id: int | None,
    limit: int | None,
    offset: int,
) -> tuple[list[SearchHitOut], dict[str, Any]]:
    settings = ctx.settings.search
    query = parse_query(q or "", settings)
    if limit is None:
        limit = settings.limit_default
    if not 1 <= limit <= settings.limit_max:
        raise validation_error(f"limit must be between 1 and {settings.limit_max}", "limit")
    if not 0 <= offset <= settings.offset_max:
        raise validation_error(f"offset must be between 0 and {settings.offset_max}", "offset")
    if chat_id is not None:
        # The precise answer for an explicit chat (404 outside the workspace, 403 for a non-member); the
        # engine checks membership again in its own query.
        async with ctx.engine.connect() as conn:
            await require_member(conn, caller, chat_id)
    page = await ctx.search.search(caller, query, chat_id=chat_id, limit=limit, offset=offset)
    next_offset = offset + limit if page.has_more and offset + limit <= settings.offset_max else None
    meta = {
        "limit": limit,
        "offset": offset,
        "has_more": page.has_more,
        "next_offset": next_offset,
        "engine": ctx.search.name,
    }
    return page.hits, meta
