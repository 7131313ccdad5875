"""Rate limits and body size limits per route tier.

Every proxied request counts against its client address (``per_ip``) and against its tier:

| tier | requests | counted per |
|---|---|---|
| ``auth`` | ``POST /api/signin``, ``/api/signup``, ``/api/refresh`` | client address |
| ``send`` | ``POST /api/chat/{id}/messages`` | user and chat |
| ``upload`` | ``POST /api/files`` | user |
| ``read`` | everything else | user (client address without a valid token) |

The user is the ``sub`` of the access token, whose signature the gateway checks with the shared key: an
invalid or expired token is counted by address, and the service answers it with 401. Both counters are
fixed windows in Redis, shared by every gateway; most requests are counted from requests the gateway took
ahead from Redis (``gateway/windows.py`` says when, and what that costs in accuracy). When Redis cannot
be reached the request passes (logged once per outage; ``/health`` then reports the gateway degraded): an
outage of the limiter must not become an outage of the chat.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

from litestar.types import Scope

from fechatter_core.pipelined_redis import RedisClient, RedisFailure
from fechatter_core.ratelimit import Verdict
from fechatter_core.security import TokenError, bearer_token, verify_access_token
from fechatter_core.settings import GatewaySettings, RateRule
from gateway.windows import WindowCounters

log = logging.getLogger(__name__)

AUTH_PATHS = {"/api/signin", "/api/signup", "/api/refresh"}
SEND_PATH = re.compile(r"^/api/chat/(\d+)/messages/?$")
UPLOAD_PATHS = {"/api/files", "/api/upload"}
RETRY_REDIS_AFTER = 5.0
TOKEN_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    body_limit: int
    chat_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    headers: list[tuple[bytes, bytes]]
    retry_after: int = 0


_NUMBER = re.compile(r"[+-]?\d+")


def canonical_path(path: str) -> str:
    """The path as the services route it: empty segments dropped (``//``, a trailing ``/``) and numbers
    read as integers (``01`` and ``+1`` are ``1``), so no spelling of a route escapes its tier or splits
    its counter."""
    segments = [s for s in path.split("/") if s]
    return "/" + "/".join(str(int(s)) if _NUMBER.fullmatch(s) else s for s in segments)


def classify(settings: GatewaySettings, method: str, path: str) -> Tier:
    bodies = settings.body_limits
    path = canonical_path(path)
    if method == "POST":
        if path in AUTH_PATHS:
            return Tier("auth", bodies.default_bytes)
        if path in UPLOAD_PATHS:
            return Tier("upload", bodies.upload_bytes)
        found = SEND_PATH.match(path)
        if found:
            return Tier("send", bodies.default_bytes, found.group(1))
    return Tier("read", bodies.default_bytes)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _query_token(scope: Scope) -> str | None:
    query = scope.get("query_string", b"")
    if b"access_token=" not in query:
        return None
    for part in query.decode("latin-1").split("&"):
        name, _, value = part.partition("=")
        if name == "access_token" and value:
            return value
    return None


class Limiter:
    def __init__(self, settings: GatewaySettings, redis: RedisClient | None) -> None:
        self.settings = settings
        self.rules = settings.rate_limits
        self.enabled = settings.rate_limits.enabled and redis is not None
        self.redis = redis
        self._users: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._skip_until = 0.0
        self.redis_ok = True
        self.windows = (
            WindowCounters(redis, settings.rate_limits.lease_fraction) if redis is not None else None
        )

    def user_of(self, scope: Scope) -> str | None:
        """The verified ``sub`` of the request's access token (header, or ``?access_token=`` for SSE)."""
        token = bearer_token(_header(scope, b"authorization")) or _query_token(scope)
        if not token:
            return None
        now = time.time()
        cached = self._users.get(token)
        if cached is not None and cached[1] > now:
            self._users.move_to_end(token)
            return cached[0]
        try:
            claims = verify_access_token(self.settings.auth, token)
            user, until = str(claims.user_id), float(claims.expires_at)
        except TokenError:
            user, until = None, now + 60
        self._users[token] = (user, until)
        if len(self._users) > TOKEN_CACHE_SIZE:
            self._users.popitem(last=False)
        return user

    def _rules(self, scope: Scope, tier: Tier) -> list[tuple[str, RateRule]]:
        client = scope.get("client")
        ip = client[0] if client else "-"
        rules = [(f"rl:ip:{ip}", self.rules.per_ip)]
        if tier.name == "auth":
            rules.append((f"rl:auth:{ip}", self.rules.auth))
            return rules
        user = self.user_of(scope)
        who = f"u{user}" if user else f"ip{ip}"
        if tier.name == "send":
            rules.append((f"rl:send:{who}:{tier.chat_id}", self.rules.send))
        elif tier.name == "upload":
            rules.append((f"rl:upload:{who}", self.rules.upload))
        else:
            rules.append((f"rl:read:{who}", self.rules.read))
        return rules

    async def check(self, scope: Scope, tier: Tier) -> Decision | None:
        """None when nothing was checked (limits off, or Redis unreachable)."""
        if not self.enabled or self.windows is None:
            return None
        now = time.monotonic()
        if now < self._skip_until:
            return None
        rules = [(key, rule.limit, rule.window_seconds) for key, rule in self._rules(scope, tier)]
        # Sign-in attempts are always counted in Redis, one by one: the tier that password guessing meets.
        exact = tier.name == "auth"
        verdicts = None if exact else self.windows.admit_here(rules, now)
        if verdicts is None:
            try:
                verdicts = await self.windows.count_in_redis(rules, now, lease=not exact)
            except (RedisFailure, ValueError, TypeError, IndexError) as exc:
                self._redis_failed(exc)
                return None
            if not self.redis_ok:
                log.warning("rate limits checked again, Redis is back")
                self.redis_ok = True
        return _decide(verdicts)

    def _redis_failed(self, exc: Exception) -> None:
        self._skip_until = time.monotonic() + RETRY_REDIS_AFTER
        if self.redis_ok:
            log.warning("rate limits not checked, Redis unreachable (requests pass): %s", exc)
        self.redis_ok = False


def _decide(verdicts: list[Verdict]) -> Decision:
    denied = [v for v in verdicts if not v.allowed]
    if denied:
        shown = max(denied, key=lambda v: v.retry_after)
    else:
        # The tier's own counter is reported unless the address counter is closer to its limit.
        shown = min(reversed(verdicts), key=lambda v: v.remaining)
    headers = [
        (b"x-ratelimit-limit", str(shown.limit).encode()),
        (b"x-ratelimit-remaining", str(0 if denied else shown.remaining).encode()),
        (b"x-ratelimit-reset", str(shown.retry_after).encode()),
    ]
    if denied:
        headers.append((b"retry-after", str(shown.retry_after).encode()))
        return Decision(False, headers, shown.retry_after)
    return Decision(True, headers)
