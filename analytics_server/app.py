"""The analytics service. This process opens ClickHouse (chdb by default) and NATS and reports both;
ingest and dashboard queries build on them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.types import ASGIApp

from analytics_server.store import open_store
from fechatter_core import bus
from fechatter_core.config import load_config
from fechatter_core.lifecycle import end_with_parent
from fechatter_core.logs import configure_logging
from fechatter_core.settings import AnalyticsSettings
from fechatter_core.web import EXCEPTION_HANDLERS, HealthChecks, wrap

SERVICE = "analytics_server"


def build_app(settings: AnalyticsSettings) -> Litestar:
    health = HealthChecks(SERVICE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store = await open_store(settings.clickhouse)
        nc = await bus.connect(settings.nats, name=SERVICE)

        async def check_clickhouse() -> None:
            await store.query("SELECT 1")

        async def check_nats() -> None:
            if not nc.is_connected:
                raise ConnectionError("not connected")
            await nc.flush(timeout=1)

        health.add("clickhouse", check_clickhouse)
        health.add("nats", check_nats)
        app.state.store = store
        try:
            yield
        finally:
            await nc.drain()
            await store.close()

    return Litestar(
        route_handlers=[*health.route_handlers()],
        exception_handlers=EXCEPTION_HANDLERS,
        logging_config=None,  # configure_logging owns the root logger (format, redaction)
        lifespan=[lifespan],
    )


def create_app() -> ASGIApp:
    end_with_parent()  # create_app runs in Granian's worker process
    settings = load_config("analytics", AnalyticsSettings)
    configure_logging(SERVICE, settings.log.level)
    return wrap(build_app(settings), SERVICE)
