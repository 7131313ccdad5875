"""What an operator sees of the running stack: health, metrics, restarts after a crash, `status`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import signup
from tests.stackutil import REPO_ROOT, RunningStack

pytestmark = pytest.mark.e2e

SERVICE_PORTS = {
    "fechatter_server": "FECHATTER_PORT",
    "notify_server": "NOTIFY_PORT",
    "bot_server": "BOT_PORT",
    "analytics_server": "ANALYTICS_PORT",
    "gateway": "GATEWAY_PORT",
}
INFRA = ("postgres", "nats", "redis")
# What each service connects to at start and reports on /health (the session stack runs the gateway without
# rate limits, so without Redis).
DEPENDENCY_CHECKS = {
    "fechatter_server": {"postgres", "nats", "redis"},
    "notify_server": {"postgres", "nats", "redis"},
    "bot_server": {"postgres", "nats", "llm"},
    "analytics_server": {"clickhouse", "nats"},
    "gateway": set(),
}


def service_url(stack: RunningStack, name: str) -> str:
    return f"http://127.0.0.1:{stack.port(SERVICE_PORTS[name])}"


def supervisor_log(stack: RunningStack) -> str:
    path = stack.data_dir.parent / f"{stack.data_dir.name}-supervisor.log"
    return path.read_text(errors="replace")


async def health_all(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await client.get("/api/health/all")
    return response.status_code, response.json()


@pytest.mark.parametrize("name", list(SERVICE_PORTS))
async def test_each_service_reports_its_own_health(stack: RunningStack, name: str) -> None:
    async with httpx.AsyncClient(base_url=service_url(stack, name), timeout=10) as http:
        response = await http.get("/health")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["service"] == name
    assert body["status"] in ("ok", "degraded")
    assert isinstance(body["checks"], dict)
    assert set(body["checks"]) == DEPENDENCY_CHECKS[name]
    for check in body["checks"].values():
        assert check["status"] in ("ok", "down")
        assert check["latency_ms"] >= 0
    # The infrastructure the stack started is reachable from every service that uses it.
    for dependency in set(body["checks"]) & {"postgres", "nats", "redis", "clickhouse"}:
        assert body["checks"][dependency]["status"] == "ok", body


@pytest.mark.parametrize("name", list(SERVICE_PORTS))
async def test_each_service_exposes_prometheus_metrics(stack: RunningStack, name: str) -> None:
    async with httpx.AsyncClient(base_url=service_url(stack, name), timeout=10) as http:
        assert (await http.get("/health")).status_code == 200
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE http_requests_total counter" in text
    # The /health request just made is counted under this service's name.
    counted = re.search(rf'^http_requests_total\{{[^}}]*service="{name}"[^}}]*\}} (\d+)', text, re.M)
    assert counted, text[:2000]
    assert float(counted.group(1)) >= 1


async def test_gateway_fans_in_every_services_health(stack: RunningStack, client: httpx.AsyncClient) -> None:
    # The client talks to the port given through GATEWAY_PORT: `${GATEWAY_PORT}` in gateway.yml is live.
    assert client.base_url.port == stack.port("GATEWAY_PORT")
    assert stack.state()["children"]["gateway"]["port"] == stack.port("GATEWAY_PORT")
    status, body = await health_all(client)
    assert status == 200, body
    assert body["status"] in ("ok", "degraded")
    assert set(body["services"]) == set(SERVICE_PORTS)
    for name, entry in body["services"].items():
        assert entry["status"] in ("ok", "degraded"), (name, entry)
        assert isinstance(entry["latency_ms"], int | float) and entry["latency_ms"] >= 0
        assert isinstance(entry["checks"], dict)
    # The chat API cannot serve without its database: the fan-in carries the service's own checks.
    assert body["services"]["fechatter_server"]["checks"], body


async def wait_for_health(
    client: httpx.AsyncClient, predicate: Any, timeout: float, what: str
) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    last: tuple[int, dict[str, Any]] | None = None
    while time.monotonic() < deadline:
        last = await health_all(client)
        if predicate(*last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} within {timeout}s; last /api/health/all: {last}")


def bot_is_back(status: int, body: dict[str, Any]) -> bool:
    return status == 200 and body["services"]["bot_server"]["status"] != "down"


async def test_a_crashed_service_is_restarted_while_the_rest_keep_serving(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    before = stack.state()["children"]["bot_server"]
    old_pid = before["pid"]
    assert psutil.pid_exists(old_pid)
    log_offset = len(supervisor_log(stack))

    os.killpg(old_pid, signal.SIGKILL)
    try:
        _, body = await wait_for_health(
            client,
            lambda status, body: status == 503 and body["services"]["bot_server"]["status"] == "down",
            timeout=10,
            what="bot_server was not reported down",
        )
        assert body["status"] == "down"
        assert "unreachable" in body["services"]["bot_server"]["error"]
        # The other services are unaffected.
        for name in ("gateway", "fechatter_server", "notify_server", "analytics_server"):
            assert body["services"][name]["status"] != "down", (name, body)

        # Requests for the dead service get a clear answer from the gateway, not a hang.
        proxied = await client.get("/api/bot/anything")
        assert proxied.status_code == 503
        assert proxied.json() == {
            "success": False,
            "error": {"code": "unavailable", "message": "bot_server is unavailable"},
        }
        # Everything else keeps working.
        user = await signup(client, fullname="Still Serving")
        me = await client.get("/api/users/me", headers=user.auth)
        assert me.status_code == 200

        await wait_for_health(client, bot_is_back, timeout=30, what="bot_server did not come back")
    finally:
        # Leave the shared stack healthy for whoever runs next, whatever happened above.
        with contextlib.suppress(AssertionError, httpx.HTTPError):
            await wait_for_health(client, bot_is_back, timeout=30, what="bot_server did not come back")

    after = stack.state()["children"]["bot_server"]
    assert after["restarts"] >= before["restarts"] + 1
    assert after["pid"] != old_pid
    assert psutil.pid_exists(after["pid"])
    assert after["port"] == stack.port("BOT_PORT")
    log = supervisor_log(stack)[log_offset:]
    assert re.search(r"bot_server exited with code -9; restarting in \d+s \(restart #\d+\)", log), log
    assert "bot_server restarted" in log
    # Only the killed process was restarted.
    assert not re.search(r"(fechatter_server|notify_server|analytics_server|gateway) exited", log), log


def test_status_lists_every_process_as_running(stack: RunningStack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fechatter_stack", "--data-dir", str(stack.data_dir), "status"],
        env=stack.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    children = stack.state()["children"]
    assert set(children) == {*INFRA, *SERVICE_PORTS}
    for name, child in children.items():
        row = next((line for line in lines if line.split()[:1] == [name]), None)
        assert row is not None, (name, result.stdout)
        fields = row.split()
        assert fields[-1] == "running", row
        assert int(fields[1]) == child["pid"]
        assert int(fields[2]) == child["port"]
    assert f"URL: http://localhost:{stack.port('GATEWAY_PORT')}" in result.stdout


async def test_gateway_access_log_redacts_tokens(stack: RunningStack) -> None:
    secret = "tok-e2e-0123456789"
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        response = await http.get(
            "/api/users/me", params={"access_token": secret}, headers={"Authorization": f"Bearer {secret}x"}
        )
    assert response.status_code == 401
    log_path = stack.data_dir / "logs" / "gateway.log"
    deadline = time.monotonic() + 5
    while "/api/users/me?access_token=[redacted]" not in log_path.read_text() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    text = "\n".join(p.read_text() for p in (stack.data_dir / "logs").glob("*.log"))
    assert "/api/users/me?access_token=[redacted]" in text
    assert secret not in text
