"""The AI assistant service. This process connects to its infrastructure and reports it; answering in
chats, summaries and retrieval build on these connections."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import sqlalchemy as sa
from litestar import Litestar
from litestar.types import ASGIApp

from fechatter_core import bus
from fechatter_core.config import load_config
from fechatter_core.db.engine import create_engine
from fechatter_core.lifecycle import end_with_parent
from fechatter_core.logs import configure_logging
from fechatter_core.settings import BotSettings
from fechatter_core.web import EXCEPTION_HANDLERS, HealthChecks, wrap

SERVICE = "bot_server"
DEFAULT_LLM_URL = "https://api.openai.com/v1"


def build_app(settings: BotSettings) -> Litestar:
    health = HealthChecks(SERVICE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings.database)
        nc = await bus.connect(settings.nats, name=SERVICE)

        async def check_postgres() -> None:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

        async def check_nats() -> None:
            if not nc.is_connected:
                raise ConnectionError("not connected")
            await nc.flush(timeout=1)

        async def check_llm() -> None:
            # Health never calls the provider (that costs money and leaks load); it checks the setup.
            if not settings.llm.api_key and settings.llm.base_url == DEFAULT_LLM_URL:
                raise RuntimeError("no LLM configured: set OPENAI_API_KEY or OPENAI_BASE_URL")

        health.add("postgres", check_postgres)
        health.add("nats", check_nats)
        health.add("llm", check_llm, critical=False)
        try:
            yield
        finally:
            await nc.drain()
            await engine.dispose()

    return Litestar(
        route_handlers=[*health.route_handlers()],
        exception_handlers=EXCEPTION_HANDLERS,
        logging_config=None,  # configure_logging owns the root logger (format, redaction)
        lifespan=[lifespan],
    )


def create_app() -> ASGIApp:
    end_with_parent()  # create_app runs in Granian's worker process
    settings = load_config("bot", BotSettings)
    configure_logging(SERVICE, settings.log.level)
    return wrap(build_app(settings), SERVICE)
