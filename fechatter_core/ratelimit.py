"""Fixed-window counters in Redis, shared by every replica.

A limit that cannot be checked (Redis down) lets the request through and logs it: an outage of the
limiter must not become an outage of sign-in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from fechatter_core.errors import ApiError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int

    def headers(self) -> dict[str, str]:
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def raise_if_denied(self, message: str) -> None:
        if not self.allowed:
            raise ApiError(429, "rate_limited", message, headers=self.headers())


# INCRBY and the window's EXPIRE in one atomic step (EXPIRE ... NX needs Redis 7; this runs on 6 too).
_HIT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if count == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return {count, redis.call('TTL', KEYS[1])}
"""


async def _count(redis: aioredis.Redis, key: str, window: int, *, add: int) -> tuple[int, int]:
    if add:
        count, ttl = await redis.eval(_HIT, 1, key, add, window)
    else:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = await pipe.execute()
    return int(count or 0), int(ttl) if int(ttl) > 0 else window


async def hit(redis: aioredis.Redis, key: str, *, limit: int, window: int) -> Verdict:
    """Count one attempt and say whether it is within ``limit`` per ``window`` seconds."""
    try:
        count, ttl = await _count(redis, key, window, add=1)
    except RedisError as exc:
        log.warning("rate limit %s not checked: %s", key.split(":", 2)[1], exc)
        return Verdict(True, limit, limit, 0)
    return Verdict(count <= limit, limit, max(0, limit - count), ttl)


async def peek(redis: aioredis.Redis, key: str, *, limit: int, window: int) -> Verdict:
    """Whether ``key`` is already over its limit, without counting an attempt."""
    try:
        count, ttl = await _count(redis, key, window, add=0)
    except RedisError as exc:
        log.warning("rate limit %s not checked: %s", key.split(":", 2)[1], exc)
        return Verdict(True, limit, limit, 0)
    return Verdict(count < limit, limit, max(0, limit - count), ttl)


async def clear(redis: aioredis.Redis, key: str) -> None:
    try:
        await redis.delete(key)
    except RedisError as exc:
        log.warning("rate limit key not cleared: %s", exc)


# Several fixed windows counted in one round trip (the gateway checks address, user and route tier at
# once: KEYS are the counters, ARGV their windows in seconds). Each key's window starts at its first hit;
# the reply is [count, ttl] per key, read by ``multi_window_verdicts``.
MULTI_WINDOW_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  local ttl = redis.call('TTL', key)
  if ttl < 0 then
    ttl = tonumber(ARGV[i])
    redis.call('EXPIRE', key, ttl)
  end
  out[2 * i - 1] = count
  out[2 * i] = ttl
end
return out
"""


def multi_window_verdicts(rules: list[tuple[str, int, int]], reply: list[int]) -> list[Verdict]:
    """The verdict of each ``(key, limit, window)`` rule from ``MULTI_WINDOW_SCRIPT``'s reply."""
    verdicts = []
    for i, (_, limit, window) in enumerate(rules):
        count, ttl = int(reply[2 * i]), int(reply[2 * i + 1])
        ttl = ttl if ttl > 0 else window
        verdicts.append(Verdict(count <= limit, limit, max(0, limit - count), ttl))
    return verdicts
