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


# Several fixed windows counted in one round trip (the gateway counts address, user and route tier at once).
# KEYS are the counters; ARGV holds each key's window in seconds, then each key's limit, then how many
# requests to take ahead for the caller when the count leaves room (gateway/windows.py); nothing is taken
# on a window's first count (a counter seen once needs nothing ahead). Each key's window starts at its
# first count. The reply is [count, taken, milliseconds left] per key, read by
# ``window_counts``: the count includes this request (and what was taken before), not what it took now.
MULTI_WINDOW_SCRIPT = """
local n = #KEYS
local out = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    ttl = tonumber(ARGV[i]) * 1000
    redis.call('PEXPIRE', key, ttl)
  end
  local taken = 0
  if count > 1 then
    taken = math.min(tonumber(ARGV[2 * n + i]), tonumber(ARGV[n + i]) - count)
    if taken > 0 then
      -- As an integer's digits: some Redis versions pass a Lua number as 1e+09, which INCRBY refuses.
      redis.call('INCRBY', key, string.format('%d', taken))
    else
      taken = 0
    end
  end
  out[3 * i - 2] = count
  out[3 * i - 1] = taken
  out[3 * i] = ttl
end
return out
"""


def window_counts(reply: list[int], keys: int) -> list[tuple[int, int, int]]:
    """``(count, taken, milliseconds left)`` of each key from ``MULTI_WINDOW_SCRIPT``'s reply."""
    if len(reply) != 3 * keys:
        raise ValueError(f"expected {3 * keys} numbers from the window script, got {len(reply)}")
    return [(int(reply[3 * i]), int(reply[3 * i + 1]), max(1, int(reply[3 * i + 2]))) for i in range(keys)]
