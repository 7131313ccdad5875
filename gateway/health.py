"""Health of the services behind the gateway.

``/api/health/all`` asks every instance's own ``/health`` in parallel and sums them up. The active health
checker asks the same of every instance every ``health_checks.interval_seconds`` in the background: an
instance that fails ``unhealthy_after`` probes in a row (no answer in ``timeout_seconds``, or a status
other than 200, such as the 503 of a service whose database is down) is taken out of rotation, and one
that passes ``healthy_after`` probes in a row is put back. Requests go to the instances in rotation; only
when none is left are the others tried, so one instance that fails its probes is still tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec
from prometheus_client import Gauge

from fechatter_core.settings import HealthCheckSettings
from gateway.routing import RoutingTable, Upstream
from gateway.upstream import Pool, UpstreamError

log = logging.getLogger(__name__)

IN_ROTATION = Gauge(
    "gateway_upstream_in_rotation",
    "1 while the active health checks keep an upstream instance in rotation, else 0",
    ["upstream", "server"],
)


async def _probe(pool: Pool, server: str, path: str = "/health") -> dict[str, Any]:
    started = time.perf_counter()
    try:
        _, raw = await pool.fetch(server, path, timeout=2.0)
        body = msgspec.json.decode(raw)
        status = body.get("status", "down") if isinstance(body, dict) else "down"
        checks = body.get("checks", {}) if isinstance(body, dict) else {}
    except (UpstreamError, TimeoutError, msgspec.DecodeError) as exc:
        return {
            "status": "down",
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "checks": {},
            "error": f"unreachable ({type(exc).__name__})",
        }
    return {
        "status": status,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "checks": checks,
    }


def _worst(statuses: list[str]) -> str:
    if "down" in statuses:
        return "down"
    if "degraded" in statuses:
        return "degraded"
    return "ok"


async def health_all(table: RoutingTable, pool: Pool) -> tuple[int, dict[str, Any]]:
    names = list(table.upstreams)
    probes = [
        [_probe(pool, server, table.upstreams[name].health_path) for server in table.upstreams[name].servers]
        for name in names
    ]
    results = await asyncio.gather(*(asyncio.gather(*group) for group in probes))
    services: dict[str, Any] = {"gateway": {"status": "ok", "latency_ms": 0.0, "checks": {}}}
    for name, replicas in zip(names, results, strict=True):
        # A service is up while at least one replica serves; the worst healthy replica sets its state.
        alive = [r for r in replicas if r["status"] != "down"]
        entry = dict(min(alive, key=lambda r: r["status"] == "ok") if alive else replicas[0])
        if len(replicas) > 1:
            entry["replicas"] = replicas
        services[name] = entry
    status = _worst([s["status"] for s in services.values()])
    return (503 if status == "down" else 200), {"status": status, "services": services}


class HealthChecker:
    """Probes every upstream instance in the background and keeps the routing table's rotation."""

    def __init__(self, table: RoutingTable, pool: Pool, settings: HealthCheckSettings) -> None:
        self.table = table
        self.pool = pool
        self.settings = settings
        self._task: asyncio.Task[None] | None = None
        for upstream in table.upstreams.values():
            for server in upstream.servers:
                IN_ROTATION.labels(upstream.name, server).set(1)

    def start(self) -> None:
        if self.settings.enabled and self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self.check_all()
            except Exception:
                log.exception("health checks failed")
            await asyncio.sleep(self.settings.interval_seconds)

    async def check_all(self) -> None:
        await asyncio.gather(
            *(
                self._check(upstream, server)
                for upstream in self.table.upstreams.values()
                for server in upstream.servers
            )
        )

    async def _check(self, upstream: Upstream, server: str) -> None:
        try:
            status, _ = await self.pool.fetch(server, upstream.health_path, self.settings.timeout_seconds)
            passed, why = status == 200, f"status {status}"
        except (UpstreamError, TimeoutError) as exc:
            passed, why = False, str(exc) or type(exc).__name__
        changed = upstream.record_probe(
            server, passed, self.settings.unhealthy_after, self.settings.healthy_after
        )
        if changed is None:
            return
        IN_ROTATION.labels(upstream.name, server).set(1 if changed else 0)
        if changed:
            log.warning("%s at %s is back in rotation (health check passed)", upstream.name, server)
        else:
            log.warning(
                "%s at %s taken out of rotation: %d health checks failed (%s)",
                upstream.name,
                server,
                self.settings.unhealthy_after,
                why,
            )
