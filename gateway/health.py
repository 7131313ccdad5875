"""``/api/health/all``: every service's own ``/health``, asked in parallel."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from gateway.routing import RoutingTable


async def _probe(client: httpx.AsyncClient, server: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        response = await client.get(server + "/health", timeout=2.0)
        body = response.json()
        status = body.get("status", "down") if isinstance(body, dict) else "down"
        checks = body.get("checks", {}) if isinstance(body, dict) else {}
    except (httpx.HTTPError, ValueError) as exc:
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


async def health_all(table: RoutingTable, client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    names = list(table.upstreams)
    probes = [[_probe(client, server) for server in table.upstreams[name].servers] for name in names]
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
