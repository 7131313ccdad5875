"""What a search engine answers, and the one interface both engines implement.

``search.engine`` in ``fixtures/fechatter.yml`` picks ``postgres`` (the default: the messages table itself,
so a message is found as soon as its send returns) or ``meilisearch`` (an index fed by a JetStream
consumer). Either way membership is decided by PostgreSQL at query time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fechatter_core.security import AccessClaims
from fechatter_server.search.query import ParsedQuery
from fechatter_server.views import SearchHitOut


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHitOut]
    has_more: bool


class SearchEngine(Protocol):
    name: str

    async def start(self) -> None:
        """Begin whatever the engine runs in the background (the Meilisearch indexer)."""

    async def close(self) -> None: ...

    async def search(
        self, caller: AccessClaims, query: ParsedQuery, *, chat_id: int | None, limit: int, offset: int
    ) -> SearchPage:
        """Hits best first, only from chats ``caller`` is a member of in the token's workspace (and only
        ``chat_id`` when given), never deleted messages; ``limit`` + ``offset`` page through them."""
        ...
