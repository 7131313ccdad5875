"""Whether the chat API has a route, asked in-process: build the app (no lifespan, nothing started) and
send it one request. A route that does not exist answers 404 or 405 before any handler runs."""

from __future__ import annotations

import asyncio
import functools
import warnings

import httpx

from fechatter_core.config import load_config
from fechatter_core.settings import FechatterSettings
from fechatter_server.app import build_app


@functools.cache
def chat_api_answers(method: str, path: str) -> int:
    settings = load_config("fechatter", FechatterSettings, env={"JWT_SECRET": "route-probe-" * 4})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # framework deprecation notes belong to the chat API's own tests
        app = build_app(settings)

    async def probe() -> int:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
            return (await client.request(method, path)).status_code

    return asyncio.run(probe())


def route_missing(method: str, path: str) -> bool:
    return chat_api_answers(method, path) in (404, 405)
