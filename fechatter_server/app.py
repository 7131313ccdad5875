"""The chat API application: wiring of routers, lifespan resources and cross-cutting handlers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from litestar import Litestar, MediaType, Request, Response, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.types import ASGIApp

from fechatter_core import bus, redis_client
from fechatter_core.config import load_config
from fechatter_core.db.engine import create_engine
from fechatter_core.lifecycle import end_with_parent
from fechatter_core.logs import configure_logging
from fechatter_core.outbox import OutboxPublisher
from fechatter_core.settings import FechatterSettings
from fechatter_core.web import (
    EXCEPTION_HANDLERS,
    HealthChecks,
    document_binary_responses,
    document_closed_bodies,
    document_errors,
    strict_body,
    wrap,
)
from fechatter_server.auth.routes import router as auth_router
from fechatter_server.chats.routes import router as chats_router
from fechatter_server.context import AppContext
from fechatter_server.deps import authenticate, provide_caller, provide_ctx
from fechatter_server.files import images
from fechatter_server.files.routes import router as files_router
from fechatter_server.mentions.routes import router as mentions_router
from fechatter_server.messages.routes import router as messages_router
from fechatter_server.pins.routes import router as pins_router
from fechatter_server.reactions.routes import router as reactions_router
from fechatter_server.reads.routes import router as reads_router
from fechatter_server.realtime.routes import online_users_router
from fechatter_server.realtime.routes import router as realtime_router
from fechatter_server.receipts.routes import router as receipts_router
from fechatter_server.search.engines import build_search
from fechatter_server.search.routes import router as search_router
from fechatter_server.workspaces.routes import router as workspaces_router

SERVICE = "fechatter_server"


@get("/api/openapi.json", include_in_schema=False)
async def openapi_json(request: Request[Any, Any, Any]) -> Response[Any]:
    """The OpenAPI document at the path API.md names (Litestar also serves it under /api/docs/)."""
    return Response(request.app.openapi_schema.to_schema(), media_type=MediaType.JSON)


def build_app(settings: FechatterSettings) -> Litestar:
    health = HealthChecks(SERVICE)
    images.configure(settings.files.max_image_pixels)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings.database)
        nc = await bus.connect(settings.nats, name=SERVICE)
        js = nc.jetstream()
        await bus.ensure_stream(js, bus.domain_stream_config(settings.nats.stream))
        redis = redis_client.connect(settings.redis)
        hot_redis = redis_client.connect_pipelined(settings.redis)
        publisher = OutboxPublisher(
            engine, js, batch_size=settings.outbox.batch_size, interval=settings.outbox.relay_interval_seconds
        )
        publisher.start()
        search = build_search(settings, engine, js)
        await search.start()
        app.state.ctx = AppContext(settings, engine, nc, js, redis, hot_redis, publisher, search)

        async def check_postgres() -> None:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

        async def check_nats() -> None:
            if not nc.is_connected:
                raise ConnectionError("not connected")
            await nc.flush(timeout=1)

        async def check_redis() -> None:
            await redis.ping()

        health.add("postgres", check_postgres)
        health.add("nats", check_nats)
        # Redis only backs limits and presence: without it the API still serves, degraded.
        health.add("redis", check_redis, critical=False)
        try:
            yield
        finally:
            await search.close()
            await publisher.stop()
            await nc.drain()
            await redis.aclose()
            await hot_redis.aclose()
            await engine.dispose()

    app = Litestar(
        route_handlers=[
            openapi_json,
            auth_router,
            workspaces_router,
            chats_router,
            messages_router,
            reads_router,
            files_router,
            search_router,
            reactions_router,
            pins_router,
            mentions_router,
            receipts_router,
            realtime_router,
            online_users_router,
            *health.route_handlers(),
        ],
        dependencies={
            "ctx": Provide(provide_ctx, sync_to_thread=False),
            "caller": Provide(provide_caller, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=strict_body(authenticate),
        logging_config=None,  # configure_logging owns the root logger (format, redaction)
        lifespan=[lifespan],
        request_max_body_size=settings.limits.body_max_bytes,
        openapi_config=OpenAPIConfig(
            title="Fechatter API",
            version="1.0.0",
            path="/api/docs",
            render_plugins=[ScalarRenderPlugin(path="/")],
            description="The Fechatter chat API. Every response uses the envelope of API.md.",
        ),
    )
    document_closed_bodies(app)
    document_errors(app)
    document_binary_responses(app)
    return app


def create_app() -> ASGIApp:
    end_with_parent()  # create_app runs in Granian's worker process
    settings = load_config("fechatter", FechatterSettings)
    configure_logging(SERVICE, settings.log.level)
    return wrap(build_app(settings), SERVICE)
