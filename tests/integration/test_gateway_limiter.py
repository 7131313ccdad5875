"""The gateway's limiter as a request meets it, against a real redis-server: the headers it reports
across leases, and sign-in attempts counted in Redis one by one."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from fechatter_core.config import load_config
from fechatter_core.pipelined_redis import RedisClient
from fechatter_core.security import issue_access_token
from fechatter_core.settings import GatewaySettings
from gateway.limits import Limiter, classify
from tests.integration.redisutil import PASSWORD, connected

Server = tuple[int, subprocess.Popen[bytes]]
SECRET = "limiter-test-secret-0123456789abcdef"


def limiter_for(port: int) -> tuple[Limiter, GatewaySettings]:
    settings = load_config(
        "gateway",
        GatewaySettings,
        env={"JWT_SECRET": SECRET, "REDIS_URL": f"redis://127.0.0.1:{port}/4", "REDIS_PASSWORD": PASSWORD},
    )
    redis = RedisClient(settings.redis.url, password=settings.redis.password)  # type: ignore[union-attr]
    return Limiter(settings, redis), settings


def request(address: str, token: str | None = None) -> dict[str, Any]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return {"client": (address, 0), "headers": headers, "query_string": b""}


def header(decision: Any, name: bytes) -> str:
    return dict(decision.headers)[name].decode()


async def test_reads_report_every_request_while_most_skip_redis(redis_server: Server, tmp_path: Path) -> None:
    port, _ = redis_server
    limiter, settings = limiter_for(port)
    redis = await connected(port, url=f"redis://127.0.0.1:{port}/4")
    user = 1000 + len(tmp_path.name)
    token = issue_access_token(settings.auth, user, 1)
    tier = classify(settings, "GET", "/api/users")
    limit = settings.rate_limits.read.limit
    remaining = []
    for _ in range(50):
        decision = await limiter.check(request("10.9.0.1", token), tier)
        assert decision is not None and decision.allowed
        assert header(decision, b"x-ratelimit-limit") == str(limit)
        remaining.append(int(header(decision, b"x-ratelimit-remaining")))
    assert remaining == list(range(limit - 1, limit - 51, -1))
    # Redis's count holds what the gateway took ahead: most of the 50 were counted from that.
    stored = int(await redis.execute("GET", f"rl:read:u{user}"))
    assert stored > 50
    assert limiter.windows is not None
    assert stored == 50 + sum(
        lease.left for lease in limiter.windows._leases.values() if lease.limit == limit
    )
    await redis.aclose()


async def test_sign_in_attempts_are_each_counted_in_redis(redis_server: Server) -> None:
    port, _ = redis_server
    limiter, settings = limiter_for(port)
    redis = await connected(port, url=f"redis://127.0.0.1:{port}/4")
    tier = classify(settings, "POST", "/api/signin")
    limit = settings.rate_limits.auth.limit
    assert int(limit * settings.rate_limits.lease_fraction) > 0  # a lease would be possible
    for n in range(1, limit + 1):
        decision = await limiter.check(request("10.9.0.2"), tier)
        assert decision is not None and decision.allowed
        assert int(await redis.execute("GET", "rl:auth:10.9.0.2")) == n
        assert header(decision, b"x-ratelimit-remaining") == str(limit - n)
    refused = await limiter.check(request("10.9.0.2"), tier)
    assert refused is not None and not refused.allowed
    assert 0 < refused.retry_after <= settings.rate_limits.auth.window_seconds
    await redis.aclose()
    await limiter.redis.aclose()  # type: ignore[union-attr]
