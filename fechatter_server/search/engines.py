"""The engine ``search.engine`` names, built once per process by the app's lifespan."""

from __future__ import annotations

from nats.js.client import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from fechatter_core.settings import FechatterSettings
from fechatter_server.search.engine import SearchEngine
from fechatter_server.search.postgres import PostgresSearch


def build_search(settings: FechatterSettings, engine: AsyncEngine, js: JetStreamContext) -> SearchEngine:
    search = settings.search
    if search.engine == "meilisearch":
        from fechatter_server.search.meili import MeiliSearch

        return MeiliSearch(settings, engine, js)
    return PostgresSearch(
        engine, snippet_context=search.snippet_context_chars, rank_window=search.rank_window
    )
