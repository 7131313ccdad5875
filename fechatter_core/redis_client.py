"""The Redis client every service builds from its ``redis`` settings.

Redis holds only what can be lost or rebuilt (typing, presence, rate-limit windows), so each call has a short
deadline: with Redis away a request, a stream or a shutdown waits a moment, not a TCP timeout.

The pool is bounded and callers queue for a connection (up to the same deadline) instead of failing: a
burst of a thousand SSE streams opening at once would otherwise either open a thousand Redis connections
or, past the default pool's limit, fail their presence updates with "Too many connections"."""

from __future__ import annotations

import redis.asyncio as aioredis

from fechatter_core.pipelined_redis import RedisClient
from fechatter_core.settings import RedisSettings

# Enough for concurrent scripts of one process; Redis answers each in well under a millisecond.
MAX_CONNECTIONS = 32


def connect(settings: RedisSettings, *, timeout: float = 2.0) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.url,
        password=settings.password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
    )
    return aioredis.Redis.from_pool(pool)


def connect_pipelined(settings: RedisSettings, *, timeout: float = 0.5) -> RedisClient:
    """The connection for calls on every request (``fechatter_core.pipelined_redis``)."""
    return RedisClient(settings.url, password=settings.password or None, timeout=timeout)
