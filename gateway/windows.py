"""The gateway's rate-limit counters: fixed windows kept in Redis, from which the gateway takes requests
ahead, a share at a time, so that most requests are counted without waiting on Redis.

When a request is counted in Redis and the count leaves room, the gateway also takes a lease: up to
``lease_fraction`` of the limit more (never past it), added to the count in Redis at once. The next
requests of that counter are counted from the lease, here, until it is used up or its window ends; then
Redis is asked again. Requests that arrive while a lease is on its way wait for it rather than ask Redis
too (up to twice; then they ask it themselves). Nothing is taken on a window's first count, so a counter
seen once (one request from an address) holds nothing here. The caller may ask for every request to be
counted in Redis (sign-in attempts).

What it costs in accuracy, while Redis keeps its keys: nothing is let through beyond a limit, whatever the
number of gateways, since a request passes only on a count Redis granted. With one gateway process the
verdicts and ``X-RateLimit-Remaining`` are those that counting every request in Redis would give, but for
what a lease holds unused and is lost: when its window ends (by the gateway's clock, a round trip early at
most), when the gateway's connection to Redis is replaced (a lease is used only over the connection that
took it: Redis may have restarted without its keys), when a lease request times out or its request is
cancelled, or when more than MAX_LEASES are held. Several gateways (or workers) each hold their own lease,
so one may refuse a request while another still holds part of the limit (at most a lease each). What it
saves: the Redis round trip on most requests (about a quarter of the gateway's CPU per proxied request,
measured). ``lease_fraction: 0`` counts every request in Redis.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from dataclasses import dataclass

from fechatter_core.pipelined_redis import RedisClient, RedisFailure
from fechatter_core.ratelimit import MULTI_WINDOW_SCRIPT, Verdict, window_counts

# Counters whose window ended are forgotten at most this often (one pass over them).
SWEEP_EVERY_SECONDS = 5.0
# Leases held at once: past it the oldest is dropped (always safe: its requests are simply not used).
MAX_LEASES = 100_000
# No lease is larger (a limit meant as "unlimited" stays an exact integer in Redis's Lua).
MAX_LEASE = 1_000_000_000
# Times a request waits for a lease on its way before it asks Redis itself.
LEASE_WAITS = 2

Rule = tuple[str, int, int]  # key, limit, window in seconds


@dataclass(slots=True)
class _Lease:
    limit: int
    ends_at: float  # the window's end, by time.monotonic()
    used: int  # requests counted in this window, by Redis's replies and this gateway since
    left: int  # requests taken ahead from Redis and not used yet
    connection: int | None  # the Redis connection it was taken over


class WindowCounters:
    def __init__(self, redis: RedisClient, lease_fraction: float) -> None:
        self.redis = redis
        self.lease_fraction = lease_fraction
        self._leases: dict[str, _Lease] = {}
        # Counters with a lease on its way: requests meanwhile wait for it. Each future ends with whether
        # Redis answered: when it did not, those waiting give up at once rather than ask it again.
        self._leasing: dict[str, asyncio.Future[bool]] = {}
        self._next_sweep = 0.0

    def lease_size(self, limit: int) -> int:
        return min(int(limit * self.lease_fraction), MAX_LEASE)

    def _usable(self, key: str, limit: int, now: float) -> _Lease | None:
        lease = self._leases.get(key)
        if (
            lease is None
            or lease.left <= 0
            or lease.limit != limit
            or lease.ends_at <= now
            or lease.connection is None
            or lease.connection != self.redis.connection_number
        ):
            return None
        return lease

    def admit_here(self, rules: list[Rule], now: float) -> list[Verdict] | None:
        """The verdicts of a request counted from leases held here, or None when it must go to Redis."""
        leases = []
        for key, limit, _ in rules:
            lease = self._usable(key, limit, now)
            if lease is None:
                return None
            leases.append(lease)
        return [_take(lease, now) for lease in leases]

    async def count_in_redis(self, rules: list[Rule], now: float, *, lease: bool = True) -> list[Verdict]:
        """Count the request in Redis, taking a lease on each counter when ``lease``; a counter with a
        lease in hand (or on its way) counts it from the lease. Raises RedisFailure (or what a malformed
        reply raises) when Redis cannot be asked. ``now`` is time.monotonic()."""
        self._sweep(now)
        for _ in range(LEASE_WAITS):
            awaited = [self._leasing[key] for key, _, _ in rules if key in self._leasing]
            if not awaited:
                break
            await asyncio.wait(awaited)
            if not all(future.result() for future in awaited):
                raise RedisFailure("Redis did not answer the lease request this request waited for")
            now = time.monotonic()
        verdicts: list[Verdict | None] = []
        remote: list[Rule] = []
        for key, limit, seconds in rules:
            held = self._usable(key, limit, now)
            if held is not None:
                verdicts.append(_take(held, now))
            else:
                verdicts.append(None)
                remote.append((key, limit, seconds))
        if not remote:
            return [verdict for verdict in verdicts if verdict is not None]
        sizes = [
            self.lease_size(limit) if lease and key not in self._leasing else 0 for key, limit, _ in remote
        ]
        loop = asyncio.get_running_loop()
        mine = {key: loop.create_future() for (key, _, _), size in zip(remote, sizes, strict=True) if size}
        self._leasing.update(mine)
        answered = False
        try:
            reply = await self.redis.script(
                MULTI_WINDOW_SCRIPT,
                [key for key, _, _ in remote],
                [*(seconds for _, _, seconds in remote), *(limit for _, limit, _ in remote), *sizes],
            )
            counts = window_counts(reply, len(remote))
            answered = True
            connection = self.redis.connection_number
            results = iter(zip(remote, counts, strict=True))
            for index, verdict in enumerate(verdicts):
                if verdict is None:
                    (key, limit, _), (count, taken, ttl_ms) = next(results)
                    verdicts[index] = self._learn(key, limit, count, taken, ttl_ms, connection, now)
        finally:
            for key, future in mine.items():
                # A holder cancelled (its client left) is no sign of Redis failing: the others go on.
                future.set_result(answered or not _failing())
                if self._leasing.get(key) is future:
                    del self._leasing[key]
        return [verdict for verdict in verdicts if verdict is not None]

    def _learn(
        self, key: str, limit: int, count: int, taken: int, ttl_ms: int, connection: int | None, now: float
    ) -> Verdict:
        """The verdict of Redis's ``count`` (this request included), and the lease it granted, if any."""
        # Redis's clock started the window no earlier than ``now``: ending it here by ``now`` can only
        # stop a lease early, never use one in the next window.
        ends_at = now + ttl_ms / 1000
        held = self._leases.get(key)
        used = count
        if taken:
            if len(self._leases) >= MAX_LEASES and key not in self._leases:
                del self._leases[next(iter(self._leases))]
            self._leases[key] = _Lease(limit, ends_at, count, taken, connection)
        elif (
            held is not None
            and connection is not None
            and held.connection == connection
            and _same_window(held, ends_at, now)
        ):
            if count > limit and held.left > 0:
                # Refused by Redis's count, which includes what this gateway holds unused in the same
                # window (a lease granted while this request was on its way): the request is one of those.
                return _take(held, now)
            # Counted in Redis beside a lease of the same window: what this gateway has used is the count,
            # less what it still holds unused.
            used = count - held.left
            held.used = max(held.used, used)
        return Verdict(count <= limit, limit, max(0, limit - used), max(1, math.ceil(ends_at - now)))

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_SECONDS
        ended = [key for key, lease in self._leases.items() if lease.ends_at <= now]
        for key in ended:
            del self._leases[key]


def _failing() -> bool:
    """Whether the exception being handled (in a ``finally``) is a failure to get Redis's answer."""
    error = sys.exc_info()[1]
    return isinstance(error, RedisFailure | ValueError | TypeError | IndexError)


def _take(lease: _Lease, now: float) -> Verdict:
    lease.left -= 1
    lease.used += 1
    return Verdict(True, lease.limit, lease.limit - lease.used, max(1, math.ceil(lease.ends_at - now)))


def _same_window(lease: _Lease, ends_at: float, now: float) -> bool:
    # Two readings of one window's end differ by a round trip and Redis's rounding to the millisecond; the
    # next window ends at least a whole window (a second or more) later.
    return lease.ends_at > now and abs(lease.ends_at - ends_at) < 0.5
