"""The gateway's rate-limit counters: fixed windows kept in Redis, from which the gateway takes requests
ahead, a share at a time, so that most requests are counted without waiting on Redis.

When a request is counted in Redis and its count is well under the limit, the gateway also takes a lease:
up to ``lease_fraction`` of the limit more, added to the count in Redis at once. The next requests of that
counter are then counted from the lease, here, until it is used up or its window ends; then Redis is asked
again. A lease never reaches past the limit (near it, leases shrink to what is left), and once a limit is
reached every request is counted in Redis. Sign-in attempts always are (the caller asks for it).

What it costs in accuracy: nothing is ever let through beyond a limit, whatever the number of gateways,
since every request passes only on a count Redis granted. With one gateway process the verdicts are
exact, as is the ``X-RateLimit-Remaining`` it reports when a counter's requests come one at a time (what it
holds in leases it uses before it asks again; one lease at a time per counter, so a burst at the start of
a window does not take a share per request).
Several gateways (or workers) each hold their own lease: a request may be refused while another gateway
still holds unused requests of the same counter (at most a lease each), and the remaining count each
reports leaves out the others' unused leases. What it saves: the Redis round trip on most requests (about
a quarter of the gateway's CPU per proxied request, measured). ``lease_fraction: 0`` counts every request
in Redis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fechatter_core.pipelined_redis import RedisClient
from fechatter_core.ratelimit import MULTI_WINDOW_SCRIPT, Verdict, window_counts

# Counters whose window ended are forgotten at most this often (one pass over them).
SWEEP_EVERY_SECONDS = 5.0

Rule = tuple[str, int, int]  # key, limit, window in seconds


@dataclass(slots=True)
class _Lease:
    limit: int
    ends_at: float  # the window's end, by time.monotonic()
    used: int  # requests counted in this window, by Redis's last reply and this gateway since
    left: int  # requests taken ahead from Redis and not used yet


class WindowCounters:
    def __init__(self, redis: RedisClient, lease_fraction: float) -> None:
        self.redis = redis
        self.lease_fraction = lease_fraction
        self._leases: dict[str, _Lease] = {}
        # Counters with a lease on its way: requests meanwhile are counted in Redis without taking one
        # more, or a burst at the start of a window would each take a share and use up the limit.
        self._leasing: set[str] = set()
        self._next_sweep = 0.0

    def lease_size(self, limit: int) -> int:
        return int(limit * self.lease_fraction)

    def admit_here(self, rules: list[Rule], now: float) -> list[Verdict] | None:
        """The verdicts of a request counted from leases held here, or None when Redis must count it (a
        counter without a lease, or whose lease is used up or whose window ended)."""
        leases = []
        for key, limit, _ in rules:
            lease = self._leases.get(key)
            if lease is None or lease.left <= 0 or lease.limit != limit or lease.ends_at <= now:
                return None
            leases.append(lease)
        verdicts = []
        for lease in leases:
            lease.left -= 1
            lease.used += 1
            verdicts.append(Verdict(True, lease.limit, lease.limit - lease.used, _seconds_left(lease, now)))
        return verdicts

    async def count_in_redis(self, rules: list[Rule], now: float, *, lease: bool = True) -> list[Verdict]:
        """Count the request in Redis, taking a lease on each counter when ``lease``; a counter with a
        lease still in hand counts it from the lease. Raises RedisFailure (or what a malformed reply
        raises) when Redis cannot be asked. ``now`` is time.monotonic()."""
        self._sweep(now)
        verdicts: list[Verdict | None] = []
        remote: list[Rule] = []
        for key, limit, seconds in rules:
            held = self._leases.get(key)
            if held is not None and held.left > 0 and held.limit == limit and held.ends_at > now:
                held.left -= 1
                held.used += 1
                verdicts.append(Verdict(True, limit, limit - held.used, _seconds_left(held, now)))
            else:
                verdicts.append(None)
                remote.append((key, limit, seconds))
        if not remote:
            return [verdict for verdict in verdicts if verdict is not None]
        sizes = []
        for key, limit, _ in remote:
            size = self.lease_size(limit) if lease and key not in self._leasing else 0
            if size:
                self._leasing.add(key)
            sizes.append(size)
        try:
            reply = await self.redis.script(
                MULTI_WINDOW_SCRIPT,
                [key for key, _, _ in remote],
                [*(seconds for _, _, seconds in remote), *(limit for _, limit, _ in remote), *sizes],
            )
        finally:
            for (key, _, _), size in zip(remote, sizes, strict=True):
                if size:
                    self._leasing.discard(key)
        counted = iter(zip(remote, window_counts(reply, len(remote)), strict=True))
        for index, verdict in enumerate(verdicts):
            if verdict is not None:
                continue
            (key, limit, _), (count, taken, ttl_ms) = next(counted)
            # Redis's clock started the window no earlier than ``now``: ending it here by ``now`` can only
            # stop a lease early, never use one in the next window.
            window = _Lease(limit, now + ttl_ms / 1000, count, taken)
            if taken:
                self._leases[key] = window
            left = max(0, limit - count)
            verdicts[index] = Verdict(count <= limit, limit, left, _seconds_left(window, now))
        return [verdict for verdict in verdicts if verdict is not None]

    def forget(self) -> None:
        """Drop every lease (Redis failed: it may have restarted without them)."""
        self._leases.clear()
        self._leasing.clear()

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_SECONDS
        ended = [key for key, lease in self._leases.items() if lease.ends_at <= now]
        for key in ended:
            del self._leases[key]


def _seconds_left(lease: _Lease, now: float) -> int:
    return max(1, math.ceil(lease.ends_at - now))
