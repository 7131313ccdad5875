from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from fechatter_core.settings import NotifySettings
from notify_server.connections import Registry


@dataclass
class NotifyContext:
    settings: NotifySettings
    engine: AsyncEngine
    nats: NatsClient
    js: JetStreamContext
    registry: Registry
