"""Everything a request handler may need, built once per process in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from fechatter_core.outbox import OutboxPublisher
from fechatter_core.pipelined_redis import RedisClient
from fechatter_core.security import AccessTokenCache
from fechatter_core.settings import FechatterSettings
from fechatter_server.search.engine import SearchEngine


@dataclass
class AppContext:
    settings: FechatterSettings
    engine: AsyncEngine
    nats: NatsClient
    js: JetStreamContext
    redis: aioredis.Redis
    # For the Redis call of every message send (ending the sender's typing): see pipelined_redis.
    hot_redis: RedisClient
    publisher: OutboxPublisher
    search: SearchEngine = None  # type: ignore[assignment]  # set by the lifespan before serving
    tokens: AccessTokenCache = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = AccessTokenCache(self.settings.auth)
