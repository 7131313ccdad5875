"""The gateway's rate-limit counters against a real redis-server: requests counted from leases taken
ahead from Redis get the verdicts that counting each in Redis would give, no number of gateways lets more
through than a limit, and a lease never outlives its window."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from fechatter_core.pipelined_redis import RedisClient
from fechatter_core.ratelimit import Verdict
from gateway.windows import WindowCounters
from tests.integration.redisutil import connected

Server = tuple[int, subprocess.Popen[bytes]]
Rules = list[tuple[str, int, int]]


class Gateway:
    """WindowCounters used as the gateway's limiter uses them, noting each request that asked Redis."""

    def __init__(self, redis: RedisClient, lease_fraction: float = 0.1) -> None:
        self.counters = WindowCounters(redis, lease_fraction)
        self.asked_redis = 0

    async def hit(self, rules: Rules, *, lease: bool = True) -> list[Verdict]:
        now = time.monotonic()
        verdicts = self.counters.admit_here(rules, now) if lease else None
        if verdicts is None:
            self.asked_redis += 1
            verdicts = await self.counters.count_in_redis(rules, now, lease=lease)
        return verdicts


async def stored(redis: RedisClient, key: str) -> int:
    return int(await redis.execute("GET", key) or 0)


async def test_one_gateway_reports_exact_counts_and_asks_redis_once_a_lease(
    redis_server: Server, tmp_path: Path
) -> None:
    port, _ = redis_server
    redis = await connected(port)
    gateway = Gateway(redis)
    key = f"rl:read:{tmp_path.name}"
    rules = [(key, 100, 60)]
    seen = [(await gateway.hit(rules))[0] for _ in range(100)]
    assert [v.remaining for v in seen] == list(range(99, -1, -1))
    assert all(v.allowed and 0 < v.retry_after <= 60 for v in seen)
    # Counts 1, 12, 23 … 89 each took 10 ahead; 100 found no room left to take.
    assert gateway.asked_redis == 10
    refused = (await gateway.hit(rules))[0]
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert 0 < refused.retry_after <= 60
    assert gateway.asked_redis == 11
    assert await stored(redis, key) == 101  # every lease was used: Redis's count is the true one
    await redis.aclose()


async def test_a_burst_takes_one_lease_not_one_per_request(redis_server: Server, tmp_path: Path) -> None:
    port, _ = redis_server
    redis = await connected(port)
    gateway = Gateway(redis)
    key = f"rl:read:{tmp_path.name}"
    rules = [(key, 100, 60)]
    verdicts = await asyncio.gather(*(gateway.hit(rules) for _ in range(40)))
    assert all(v[0].allowed for v in verdicts)
    # All 40 asked Redis at once (none had a lease yet), and only the first took 10 ahead.
    assert await stored(redis, key) == 40 + 10
    assert [(await gateway.hit(rules))[0].allowed for _ in range(60)] == [True] * 60
    assert (await gateway.hit(rules))[0].allowed is False
    await redis.aclose()


async def test_gateways_together_never_let_more_through_than_the_limit(
    redis_server: Server, tmp_path: Path
) -> None:
    port, _ = redis_server
    clients = [await connected(port) for _ in range(3)]
    gateways = [Gateway(client, lease_fraction=0.2) for client in clients]
    key = f"rl:ip:{tmp_path.name}"
    rules = [(key, 200, 60)]

    async def burst(gateway: Gateway) -> int:
        passed = 0
        for _ in range(120):
            passed += (await gateway.hit(rules))[0].allowed
            await asyncio.sleep(0)
        return passed

    passed = sum(await asyncio.gather(*(burst(gateway) for gateway in gateways)))
    # Never more than the limit; fewer by at most what the three still hold unused (a lease of 40 each).
    assert 200 - 3 * 40 <= passed <= 200
    assert await stored(clients[0], key) == 3 * 120 + sum(
        lease.left for gateway in gateways for lease in gateway.counters._leases.values()
    )
    for client in clients:
        await client.aclose()


async def test_a_lease_shrinks_to_what_the_limit_leaves(redis_server: Server, tmp_path: Path) -> None:
    port, _ = redis_server
    redis = await connected(port)
    one, other = Gateway(redis), Gateway(redis)
    key = f"rl:send:{tmp_path.name}"
    rules = [(key, 30, 10)]
    for _ in range(28):
        await other.hit(rules)
    assert other.asked_redis == 7  # each of them took 3 ahead, all used
    assert await stored(redis, key) == 28
    verdicts = [(await one.hit(rules))[0] for _ in range(4)]
    assert [(v.allowed, v.remaining) for v in verdicts] == [(True, 1), (True, 0), (False, 0), (False, 0)]
    # The 29th took the one request left ahead; each refused request asked Redis.
    assert one.asked_redis == 3
    assert await stored(redis, key) == 32
    await redis.aclose()


async def test_sign_in_attempts_take_no_lease(redis_server: Server, tmp_path: Path) -> None:
    port, _ = redis_server
    redis = await connected(port)
    gateway = Gateway(redis)
    key = f"rl:auth:{tmp_path.name}"
    for n in range(5):
        verdict = (await gateway.hit([(key, 100, 60)], lease=False))[0]
        assert verdict.remaining == 99 - n
        assert await stored(redis, key) == n + 1
    assert gateway.asked_redis == 5
    await redis.aclose()


async def test_a_lease_ends_with_its_window(redis_server: Server, tmp_path: Path) -> None:
    port, _ = redis_server
    redis = await connected(port)
    gateway = Gateway(redis)
    key = f"rl:read:{tmp_path.name}"
    rules = [(key, 1000, 1)]
    await gateway.hit(rules)  # takes 100 ahead
    assert await stored(redis, key) == 101
    await asyncio.sleep(1.1)  # the one-second window is over, in Redis and here
    assert await redis.execute("EXISTS", key) == 0
    fresh = (await gateway.hit(rules))[0]
    assert gateway.asked_redis == 2
    assert fresh.remaining == 999  # a new window, counted from this request alone
    await redis.aclose()


async def test_a_request_with_one_counter_leased_and_one_not(redis_server: Server, tmp_path: Path) -> None:
    port, _ = redis_server
    redis = await connected(port)
    gateway = Gateway(redis)
    address, chat_a, chat_b = (f"rl:{part}:{tmp_path.name}" for part in ("ip", "send-a", "send-b"))
    first = await gateway.hit([(address, 100, 60), (chat_a, 8, 10)])
    assert [v.remaining for v in first] == [99, 7]
    # The address has a lease; a send to another chat has none (8 is too small a limit to lease from).
    second = await gateway.hit([(address, 100, 60), (chat_b, 8, 10)])
    assert [v.remaining for v in second] == [98, 7]
    assert gateway.asked_redis == 2
    assert await stored(redis, address) == 1 + 10  # the second request came from the lease
    assert await stored(redis, chat_b) == 1
    await redis.aclose()


async def test_with_no_lease_every_request_is_counted_in_redis(redis_server: Server, tmp_path: Path) -> None:
    port, _ = redis_server
    redis = await connected(port)
    gateway = Gateway(redis, lease_fraction=0)
    key = f"rl:read:{tmp_path.name}"
    for n in range(5):
        await gateway.hit([(key, 100, 60)])
        assert await stored(redis, key) == n + 1
    assert gateway.asked_redis == 5
    await redis.aclose()
