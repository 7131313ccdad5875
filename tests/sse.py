"""SSE client helpers for tests: read a live stream into (id, event, data) tuples."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tests.conftest import User
from tests.stackutil import RunningStack


class SseReader:
    """Reads a live SSE response into (id, event, data) tuples."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events: asyncio.Queue[tuple[str | None, str, Any]] = asyncio.Queue()
        self.comments: list[str] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        event_id, name, data = None, "message", []
        async for line in self.response.aiter_lines():
            if line.startswith(":"):
                self.comments.append(line)
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                await self.events.put((event_id, name, json.loads("\n".join(data))))
                event_id, name, data = None, "message", []

    async def next(self, name: str, timeout: float = 5.0) -> tuple[str | None, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            event_id, got, data = await asyncio.wait_for(self.events.get(), max(remaining, 0.01))
            if got == name:
                return event_id, data

    async def wait_ended(self, timeout: float) -> None:
        """Return once the server has ended the stream (raises TimeoutError if it has not)."""
        await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def close(self) -> None:
        self._task.cancel()
        await self.response.aclose()


async def open_sse(stack: RunningStack, user: User, **params: str) -> tuple[httpx.AsyncClient, SseReader]:
    http = httpx.AsyncClient(base_url=stack.url, timeout=httpx.Timeout(10, read=30))
    headers = dict(user.auth)
    if "last_event_id" in params:
        headers["Last-Event-ID"] = params.pop("last_event_id")
    request = http.build_request("GET", "/sse", headers=headers, params=params)
    response = await http.send(request, stream=True)
    assert response.status_code == 200, await response.aread()
    assert response.headers["content-type"].startswith("text/event-stream")
    return http, SseReader(response)


async def send(
    client: httpx.AsyncClient, user: User, chat_id: int, content: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        f"/api/chat/{chat_id}/messages", headers=user.auth, json={"content": content, **extra}
    )
