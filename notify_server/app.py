"""The notify service: SSE delivery with resume, fed by JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

import sqlalchemy as sa
from litestar import Litestar
from litestar.types import ASGIApp

from fechatter_core import bus, redis_client
from fechatter_core.config import load_config
from fechatter_core.db.engine import create_engine
from fechatter_core.lifecycle import end_with_parent
from fechatter_core.logs import configure_logging
from fechatter_core.settings import NotifySettings
from fechatter_core.web import EXCEPTION_HANDLERS, HealthChecks, wrap
from notify_server.connections import Registry
from notify_server.context import NotifyContext
from notify_server.fanout import Fanout
from notify_server.leader import Lease
from notify_server.sse import SseEndpoint

SERVICE = "notify_server"


def build_app(settings: NotifySettings) -> Litestar:
    health = HealthChecks(SERVICE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings.database)
        nc = await bus.connect(settings.nats, name=SERVICE)
        js = nc.jetstream()
        await bus.ensure_stream(js, bus.domain_stream_config(settings.nats.stream))
        await bus.ensure_stream(
            js,
            bus.user_log_stream_config(
                settings.nats.user_stream,
                retention_hours=settings.sse.retention_hours,
                per_user=settings.sse.retention_per_user,
            ),
        )
        redis = redis_client.connect(settings.redis)
        registry = Registry(nc, js, redis, settings.nats.user_stream, settings.sse)
        await registry.start()
        fanout = Fanout(
            js,
            engine,
            domain_stream=settings.nats.stream,
            user_stream=settings.nats.user_stream,
            lease=Lease(js, f"{socket.gethostname()}:{os.getpid()}"),
        )
        await fanout.start()
        app.state.ctx = NotifyContext(settings, engine, nc, js, registry)

        async def check_postgres() -> None:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

        async def check_nats() -> None:
            if not nc.is_connected:
                raise ConnectionError("not connected")
            await nc.flush(timeout=1)

        async def check_redis() -> None:
            await redis.ping()

        health.add("nats", check_nats)
        health.add("postgres", check_postgres)
        # Redis backs only typing and presence: without it events are still delivered, degraded.
        health.add("redis", check_redis, critical=False)
        try:
            yield
        finally:
            await fanout.stop()
            await registry.stop()
            # Not drain(): it waits on the push/pull subscriptions; an unacked fan-out batch is simply
            # redelivered to the next process, so closing loses nothing.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), timeout=2)
            with contextlib.suppress(Exception):
                await redis.aclose()
            await engine.dispose()

    return Litestar(
        route_handlers=health.route_handlers(),
        exception_handlers=EXCEPTION_HANDLERS,
        logging_config=None,  # configure_logging owns the root logger (format, redaction)
        lifespan=[lifespan],
    )


def create_app() -> ASGIApp:
    end_with_parent()  # create_app runs in Granian's worker process
    settings = load_config("notify", NotifySettings)
    configure_logging(SERVICE, settings.log.level)
    app = build_app(settings)
    stream = SseEndpoint(app)
    return wrap(app, SERVICE, direct={"/sse": stream, "/events": stream})
