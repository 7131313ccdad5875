"""The Redis client every service builds from its ``redis`` settings.

Redis holds only what can be lost or rebuilt (typing, presence, rate-limit windows), so each call has a short
deadline: with Redis away a request, a stream or a shutdown waits a moment, not a TCP timeout."""

from __future__ import annotations

import redis.asyncio as aioredis

from fechatter_core.settings import RedisSettings


def connect(settings: RedisSettings, *, timeout: float = 2.0) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.url,
        password=settings.password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
