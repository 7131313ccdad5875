"""The gateway: the one public entry. Own routes (health fan-in, metrics) first, then the routing table,
then the web client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from litestar import Litestar, MediaType, Response, get
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from fechatter_core.config import load_config
from fechatter_core.lifecycle import end_with_parent
from fechatter_core.logs import configure_logging
from fechatter_core.settings import GatewaySettings
from fechatter_core.web import EXCEPTION_HANDLERS, HealthChecks, wrap
from gateway.cors import Cors
from gateway.forwarded import ClientAddress
from gateway.frontend import frontend_handlers
from gateway.headers import SecurityHeaders
from gateway.health import HealthChecker, health_all
from gateway.limits import Limiter, classify
from gateway.proxy import Proxy, drain, send_error
from gateway.routing import PathTemplates, RoutingTable
from gateway.upstream import Pool

SERVICE = "gateway"
OWN_PATHS = {"/health", "/api/health", "/metrics", "/api/health/all", "/gateway/health"}


def _redis(settings: GatewaySettings) -> aioredis.Redis | None:
    if settings.redis is None or not settings.rate_limits.enabled:
        return None
    return aioredis.Redis.from_url(
        settings.redis.url,
        password=settings.redis.password or None,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        max_connections=200,
    )


class GatewayApp:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.table = RoutingTable(settings)
        self.templates = PathTemplates()
        self.proxy: Proxy | None = None
        self.pool: Pool | None = None
        self.client_address = ClientAddress(settings.trusted_proxies)
        self.cors = Cors(settings.cors.allow_origins)
        self.security_headers = SecurityHeaders(
            settings.security_headers, tls=bool(settings.tls.cert and settings.tls.key)
        )
        self.redis = _redis(settings)
        self.limiter = Limiter(settings, self.redis)
        self.litestar = self._build_litestar()

    def _build_litestar(self) -> Litestar:
        health = HealthChecks(SERVICE)
        redis = self.redis
        if redis is not None:

            async def check_redis() -> None:
                await redis.ping()

            # Not critical: without Redis requests pass unlimited, which is degraded, not down.
            health.add("redis", check_redis, critical=False)

        @contextlib.asynccontextmanager
        async def lifespan(app: Litestar) -> AsyncIterator[None]:
            # No cookie jar and no redirects: the pool relays exactly what each side sent, so a Set-Cookie
            # meant for one client never travels with another client's request.
            limits = self.settings.upstream_pool
            self.pool = pool = Pool(
                self.settings.upstream_connect_timeout_seconds,
                max_connections=limits.max_connections,
                wait_seconds=limits.wait_seconds,
                max_waiting=limits.max_waiting,
            )
            self.proxy = Proxy(self.table, pool, timeout=self.settings.upstream_timeout_seconds)
            checker = HealthChecker(self.table, pool, self.settings.health_checks)
            checker.start()
            try:
                yield
            finally:
                await checker.stop()
                pool.close()
                if redis is not None:
                    await redis.aclose()

        @get("/api/health/all", include_in_schema=False)
        async def all_health() -> Response[Any]:
            assert self.pool is not None
            status, body = await health_all(self.table, self.pool)
            _, own = await health.report()
            if own["status"] != "ok":
                # The gateway's own state (Redis for rate limits) counts too.
                body["services"]["gateway"] = {
                    "status": own["status"],
                    "latency_ms": 0.0,
                    "checks": own["checks"],
                }
                if body["status"] == "ok":
                    body["status"] = own["status"]
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
        self.client_address.resolve(scope)
        send = self.security_headers.wrap_send(scope, send)
        if await self.cors.preflight(scope, send):
            return
        send = self.cors.wrap_send(scope, send)
        path = scope["path"]
        route = self.table.resolve(path) if path not in OWN_PATHS else None
        if route is None or self.proxy is None:
            await self.litestar(scope, receive, send)
            return
        scope["path_template"] = self.templates.template(path)
        tier = classify(self.settings, scope["method"], path)
        decision = await self.limiter.check(scope, tier)
        if decision is not None:
            if not decision.allowed:
                await drain(receive, tier.body_limit)
                await send_error(
                    send,
                    429,
                    "rate_limited",
                    f"Too many requests; retry in {decision.retry_after} s",
                    decision.headers,
                )
                return
            send = _with_headers(send, decision.headers)
        await self.proxy.handle(scope, receive, send, route, tier.body_limit)


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            # A service's own limit (the chat API's sign-in limits) is the one that answered: keep its.
            if not any(k.lower() == b"x-ratelimit-limit" for k, _ in headers):
                headers += extra
            message["headers"] = headers
        await send(message)

    return send_with_headers


def create_app() -> ASGIApp:
    end_with_parent()  # create_app runs in Granian's worker process
    settings = load_config("gateway", GatewaySettings)
    configure_logging(SERVICE, settings.log.level)
    return wrap(GatewayApp(settings), SERVICE, access_log=True)
