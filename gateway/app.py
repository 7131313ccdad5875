"""The gateway: the one public entry. Own routes (health fan-in, metrics) first, then the routing table,
then the web client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
from litestar import Litestar, MediaType, Response, get
from litestar.types import ASGIApp, Receive, Scope, Send

from fechatter_core.config import load_config
from fechatter_core.logs import configure_logging
from fechatter_core.settings import GatewaySettings
from fechatter_core.web import EXCEPTION_HANDLERS, HealthChecks, wrap
from gateway.cors import Cors
from gateway.frontend import frontend_handlers
from gateway.health import health_all
from gateway.proxy import Proxy
from gateway.routing import RoutingTable

SERVICE = "gateway"
OWN_PATHS = {"/health", "/metrics", "/api/health/all", "/gateway/health"}


class GatewayApp:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.table = RoutingTable(settings)
        self.proxy: Proxy | None = None
        self.cors = Cors(settings.cors.allow_origins)
        self.litestar = self._build_litestar()

    def _build_litestar(self) -> Litestar:
        health = HealthChecks(SERVICE)

        @contextlib.asynccontextmanager
        async def lifespan(app: Litestar) -> AsyncIterator[None]:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.upstream_timeout_seconds, connect=2.0),
                limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200),
                follow_redirects=False,
                # A proxy must never keep cookies: httpx would store one user's Set-Cookie (the refresh
                # token) and send it upstream with every later request, anyone's.
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            )
            # Uploads have their own, smaller limit in the chat API, checked as the body streams in there.
            self.proxy = Proxy(self.table, client, self.settings.max_body_bytes)
            try:
                yield
            finally:
                await client.aclose()

        @get("/api/health/all", include_in_schema=False)
        async def all_health() -> Response[Any]:
            assert self.proxy is not None
            status, body = await health_all(self.table, self.proxy.client)
            return Response(body, status_code=status, media_type=MediaType.JSON)

        return Litestar(
            route_handlers=[
                all_health,
                *health.route_handlers(),
                *frontend_handlers(self.settings.frontend_dir),
            ],
            exception_handlers=EXCEPTION_HANDLERS,
            logging_config=None,  # configure_logging owns the root logger (format, redaction)
            lifespan=[lifespan],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.litestar(scope, receive, send)
            return
        send = self.cors.wrap_send(scope, send)
        if await self.cors.preflight(scope, send):
            return
        if scope["path"] not in OWN_PATHS and self.proxy is not None:
            scope["path_template"] = "proxy"
            if await self.proxy.handle(scope, receive, send):
                return
            scope.pop("path_template", None)
        await self.litestar(scope, receive, send)


def create_app() -> ASGIApp:
    settings = load_config("gateway", GatewaySettings)
    configure_logging(SERVICE, settings.log.level)
    return wrap(GatewayApp(settings), SERVICE, access_log=True)
