"""The gateway's rate-limit counters against a real redis-server: requests counted from leases taken
ahead from Redis get the verdicts that counting each in Redis would give, no number of gateways lets more
through than a limit, and a lease never outlives its window or the Redis connection it was taken over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fechatter_core.pipelined_redis import RedisClient, RedisFailure
from fechatter_core.ratelimit import Verdict
from gateway.windows import MAX_LEASE, WindowCounters
from tests.integration.redisutil import connected

Server = tuple[int, subprocess.Popen[bytes]]
Rules = list[tuple[str, int, int]]


class Gateway:
    """WindowCounters used as the gateway's limiter uses them, noting each request not counted from a lease
    at once (it asked Redis, or waited for a lease on its way)."""

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

    def unused(self) -> int:
        return sum(lease.left for lease in self.counters._leases.values())


@pytest.fixture
async def redis(redis_server: Server) -> AsyncIterator[RedisClient]:
    client = await connected(redis_server[0])
    try:
        yield client
    finally:
        await client.aclose()


async def script_runs(redis: RedisClient) -> int:
    """How many times this Redis has run a script (EVALSHA or EVAL) since it started."""
    info = (await redis.execute("INFO", "commandstats")).decode()
    return sum(
        int(line.split("calls=")[1].split(",")[0])
        for line in info.splitlines()
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:"))
    )


async def stored(redis: RedisClient, key: str) -> int:
    return int(await redis.execute("GET", key) or 0)


async def test_one_gateway_reports_exact_counts_and_asks_redis_once_a_lease(
    redis: RedisClient, tmp_path: Path
) -> None:
    gateway = Gateway(redis)
    key = f"rl:read:{tmp_path.name}"
    rules = [(key, 100, 60)]
    seen = [(await gateway.hit(rules))[0] for _ in range(100)]
    assert [v.remaining for v in seen] == list(range(99, -1, -1))
    assert all(v.allowed and 0 < v.retry_after <= 60 for v in seen)
    # Nothing is taken on the first count; then counts 2, 13, 24 … 90 each took 10 ahead, and 101 (the
    # 91st request) took the 9 left.
    assert gateway.asked_redis == 1 + 9
    refused = (await gateway.hit(rules))[0]
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert 0 < refused.retry_after <= 60
    assert gateway.asked_redis == 11
    assert await stored(redis, key) == 101  # every lease was used: Redis's count is the true one


async def test_requests_at_once_near_the_limit_get_exactly_the_limit(
    redis: RedisClient, tmp_path: Path
) -> None:
    gateway = Gateway(redis)
    key = f"rl:send:{tmp_path.name}"
    rules = [(key, 30, 10)]
    await gateway.hit(rules)  # the window's first count, which takes nothing ahead
    verdicts = [v[0] for v in await asyncio.gather(*(gateway.hit(rules) for _ in range(29)))]
    # Requests that came while a lease was on its way waited for it, or were granted from it when Redis's
    # count (which holds the lease) refused them: none is refused while this gateway holds requests unused.
    assert all(v.allowed for v in verdicts)
    assert sorted(v.remaining for v in verdicts) == list(range(29))
    assert gateway.unused() == 0
    assert (await gateway.hit(rules))[0].allowed is False


async def test_a_burst_takes_one_lease_not_one_per_request(redis: RedisClient, tmp_path: Path) -> None:
    gateway = Gateway(redis)
    key = f"rl:read:{tmp_path.name}"
    rules = [(key, 100, 60)]
    await gateway.hit(rules)  # the window's first count takes nothing
    before = await script_runs(redis)
    verdicts = await asyncio.gather(*(gateway.hit(rules) for _ in range(40)))
    assert all(v[0].allowed for v in verdicts)
    # The first of the 40 took 10 ahead while the others waited for it; those it could not serve took
    # the next lease, and so on: far fewer than 40 were counted in Redis.
    assert await script_runs(redis) - before <= 25
    assert await stored(redis, key) == 41 + gateway.unused()
    assert sorted(v[0].remaining for v in verdicts) == list(range(59, 99))
    # The count is exact afterwards, one request at a time.
    assert (await gateway.hit(rules))[0].remaining == 58
    assert [(await gateway.hit(rules))[0].allowed for _ in range(58)] == [True] * 58
    assert (await gateway.hit(rules))[0].allowed is False


async def test_requests_waiting_for_a_lease_are_not_left_waiting_when_redis_fails(
    redis_server: Server, tmp_path: Path
) -> None:
    port, proc = redis_server
    redis = await connected(port, timeout=0.3)
    gateway = Gateway(redis)
    key = f"rl:read:{tmp_path.name}"
    rules = [(key, 100, 60)]
    await gateway.hit(rules)  # the window is open; the next count in Redis takes a lease
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(gateway.hit(rules) for _ in range(10)), return_exceptions=True), timeout=10
        )
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    assert all(isinstance(result, RedisFailure) for result in results), results
    assert not gateway.counters._leasing
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
    # Leases were taken and used (far fewer requests asked Redis than were made) …
    assert sum(gateway.asked_redis for gateway in gateways) < 3 * 120 / 2
    # … never more than the limit passed; fewer only by what the three still hold unused.
    unused = sum(gateway.unused() for gateway in gateways)
    assert passed <= 200
    assert passed + unused >= 200
    assert await stored(clients[0], key) == 3 * 120 + unused
    for client in clients:
        await client.aclose()


async def test_a_lease_shrinks_to_what_the_limit_leaves(redis: RedisClient, tmp_path: Path) -> None:
    one, other = Gateway(redis), Gateway(redis)
    key = f"rl:send:{tmp_path.name}"
    rules = [(key, 30, 10)]
    for _ in range(29):
        await other.hit(rules)
    # The first count took nothing; counts 2, 6 … 26 took 3 ahead each, all used.
    assert (other.asked_redis, other.unused()) == (8, 0)
    assert await stored(redis, key) == 29
    verdicts = [(await one.hit(rules))[0] for _ in range(3)]
    assert [(v.allowed, v.remaining) for v in verdicts] == [(True, 0), (False, 0), (False, 0)]
    assert one.asked_redis == 3  # the 30th found no room to take ahead; each refused one asked Redis
    assert await stored(redis, key) == 32


async def test_sign_in_attempts_take_no_lease(redis: RedisClient, tmp_path: Path) -> None:
    gateway = Gateway(redis)
    key = f"rl:auth:{tmp_path.name}"
    for n in range(5):
        verdict = (await gateway.hit([(key, 100, 60)], lease=False))[0]
        assert verdict.remaining == 99 - n
        assert await stored(redis, key) == n + 1
    assert gateway.asked_redis == 5


async def test_a_lease_ends_with_its_window(redis: RedisClient, tmp_path: Path) -> None:
    gateway = Gateway(redis)
    key = f"rl:read:{tmp_path.name}"
    rules = [(key, 1000, 2)]
    await gateway.hit(rules)  # opens a two-second window
    await asyncio.sleep(1.2)
    await gateway.hit(rules)  # late in the window: takes 100 ahead
    assert await stored(redis, key) == 102
    assert gateway.asked_redis == 2
    await asyncio.sleep(1.0)  # the window is over in Redis, and so is the lease here
    assert await redis.execute("EXISTS", key) == 0
    fresh = (await gateway.hit(rules))[0]
    assert gateway.asked_redis == 3
    assert fresh.remaining == 999  # a new window, counted from this request alone


async def test_a_lease_is_not_used_over_a_new_redis_connection(redis_server: Server, tmp_path: Path) -> None:
    port, _ = redis_server
    redis, admin = await connected(port), await connected(port)
    gateway = Gateway(redis)
    key = f"rl:read:{tmp_path.name}"
    rules = [(key, 100, 60)]
    await gateway.hit(rules)
    await gateway.hit(rules)  # takes 10 ahead
    assert gateway.unused() == 10
    # As when Redis restarts without its keys: they are gone, and the gateway's connection with them.
    await admin.execute("DEL", key)
    client_id = await redis.execute("CLIENT", "ID")
    assert await admin.execute("CLIENT", "KILL", "ID", client_id) == 1
    await asyncio.sleep(0.1)
    verdict = (await gateway.hit(rules))[0]
    assert gateway.asked_redis == 3
    assert verdict.remaining == 99  # counted in the new window, not from the old lease
    await redis.aclose()
    await admin.aclose()


async def test_a_request_with_one_counter_leased_and_one_not(redis: RedisClient, tmp_path: Path) -> None:
    gateway = Gateway(redis)
    address, chat_a, chat_b = (f"rl:{part}:{tmp_path.name}" for part in ("ip", "send-a", "send-b"))
    await gateway.hit([(address, 100, 60), (chat_a, 8, 10)])
    second = await gateway.hit([(address, 100, 60), (chat_a, 8, 10)])
    assert [v.remaining for v in second] == [98, 6]
    # The address has a lease now; a send to another chat has none (8 is too small a limit to lease from).
    third = await gateway.hit([(address, 100, 60), (chat_b, 8, 10)])
    assert [v.remaining for v in third] == [97, 7]
    assert gateway.asked_redis == 3
    assert await stored(redis, address) == 2 + 10  # the third request came from the lease
    assert await stored(redis, chat_b) == 1


async def test_no_lease_is_too_large_for_redis(redis: RedisClient, tmp_path: Path) -> None:
    gateway = Gateway(redis)
    key = f"rl:read:{tmp_path.name}"
    rules = [(key, 2**53, 60)]  # the largest limit the settings accept
    await gateway.hit(rules)
    second = (await gateway.hit(rules))[0]
    assert second.allowed and second.remaining == 2**53 - 2
    assert await stored(redis, key) == 2 + MAX_LEASE


async def test_with_no_lease_every_request_is_counted_in_redis(redis: RedisClient, tmp_path: Path) -> None:
    gateway = Gateway(redis, lease_fraction=0)
    key = f"rl:read:{tmp_path.name}"
    for n in range(5):
        await gateway.hit([(key, 100, 60)])
        assert await stored(redis, key) == n + 1
    assert gateway.asked_redis == 5
