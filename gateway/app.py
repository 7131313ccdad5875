"""The gateway: the one public entry. Own routes (health fan-in, metrics) first, then the routing table,
then the web client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, MediaType, Response, get
from litestar.types import ASGIApp, Receive, Scope, Send

from fechatter_core import redis_client
from fechatter_core.config import load_config
from fechatter_core.lifecycle import end_with_parent
from fechatter_core.logs import configure_logging
from fechatter_core.pipelined_redis import RedisClient
from fechatter_core.settings import GatewaySettings
from fechatter_core.web import EXCEPTION_HANDLERS, HealthChecks, send_error, wrap
from gateway.cors import Cors
from gateway.forwarded import ClientAddress
from gateway.frontend import frontend_handlers
from gateway.headers import SecurityHeaders, with_headers
from gateway.health import HealthChecker, health_all
from gateway.limits import Limiter, classify
from gateway.proxy import Proxy, drain
from gateway.routing import PathTemplates, RoutingTable
from gateway.upstream import Pool

SERVICE = "gateway"
OWN_PATHS = {"/health", "/api/health", "/metrics", "/api/health/all", "/gateway/health"}


def _redis(settings: GatewaySettings) -> RedisClient | None:
    if settings.redis is None or not settings.rate_limits.enabled:
        return None
    return redis_client.connect_pipelined(settings.redis)


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
        path = scope["path"]
        # Security headers (and rate-limit headers) join the response head in one wrapper of ``send``.
        security = self.security_headers.for_path(path)
        if scope["method"] == "OPTIONS" and await self.cors.preflight(scope, with_headers(send, security)):
            return
        send = self.cors.wrap_send(scope, send)
        route = self.table.resolve(path) if path not in OWN_PATHS else None
        if route is None or self.proxy is None:
            await self.litestar(scope, receive, with_headers(send, security))
            return
        scope["path_template"] = self.templates.template(path)
        tier = classify(self.settings, scope["method"], path)
        decision = await self.limiter.check(scope, tier)
        if decision is not None and not decision.allowed:
            await drain(receive, tier.body_limit)
            await send_error(
                with_headers(send, security),
                429,
                "rate_limited",
                f"Too many requests; retry in {decision.retry_after} s",
                decision.headers,
            )
            return
        rate_limit = decision.headers if decision is not None else ()
        await self.proxy.handle(
            scope, receive, with_headers(send, security, rate_limit), route, tier.body_limit
        )


def create_app() -> ASGIApp:
    end_with_parent()  # create_app runs in Granian's worker process
    settings = load_config("gateway", GatewaySettings)
    configure_logging(SERVICE, settings.log.level)
    return wrap(GatewayApp(settings), SERVICE, access_log=True)
