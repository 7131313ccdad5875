"""Helpers of the realtime tests: streams as context managers, collecting events, killing a service."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psutil

from tests.conftest import User
from tests.sse import SseReader, open_sse
from tests.stackutil import RunningStack


@contextlib.asynccontextmanager
async def stream(stack: RunningStack, user: User, **params: str) -> AsyncIterator[SseReader]:
    http, reader = await open_sse(stack, user, **params)
    try:
        yield reader
    finally:
        await reader.close()
        await http.aclose()


async def collect(reader: SseReader, name: str, count: int, timeout: float = 20.0) -> list[tuple[str, Any]]:
    """The next ``count`` events called ``name`` as (id, data), skipping other events."""
    deadline = time.monotonic() + timeout
    out = []
    while len(out) < count:
        event_id, data = await reader.next(name, timeout=max(0.01, deadline - time.monotonic()))
        assert event_id is not None
        out.append((event_id, data))
    return out


async def quiet(reader: SseReader, seconds: float) -> list[tuple[str | None, str, Any]]:
    """Every event that arrives within ``seconds``."""
    got = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            got.append(await asyncio.wait_for(reader.events.get(), remaining))
        except TimeoutError:
            break
    return got


def kill9(stack: RunningStack, name: str) -> int:
    """SIGKILL a child of the supervisor (by the pid in its state file); returns that pid."""
    pid = stack.state()["children"][name]["pid"]
    os.kill(pid, signal.SIGKILL)
    return int(pid)


def descendants(pid: int) -> list[psutil.Process]:
    """The processes ``pid`` started (a Granian main process: its workers)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


async def wait_restarted(stack: RunningStack, name: str, old_pid: int, timeout: float = 60.0) -> None:
    """Until the supervisor restarted ``name`` and the gateway reports every service healthy again."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=stack.url, timeout=3) as http:
        while time.monotonic() < deadline:
            pid = stack.state()["children"][name]["pid"]
            if pid and pid != old_pid:
                with contextlib.suppress(httpx.HTTPError):
                    health = await http.get("/api/health/all")
                    if health.status_code == 200 and health.json()["status"] in ("ok", "degraded"):
                        return
            await asyncio.sleep(0.3)
    raise AssertionError(f"{name} was not restarted within {timeout}s")


async def metric(base_url: str, name: str) -> float | None:
    """The value of an unlabelled Prometheus metric on a service's /metrics (None when it is absent)."""
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"{base_url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None
