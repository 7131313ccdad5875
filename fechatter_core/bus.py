"""NATS connection and the JetStream streams every service relies on, created idempotently at start."""

from __future__ import annotations

import logging

from nats.aio.client import Client as NatsClient
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError

from fechatter_core.events import DOMAIN_SUBJECTS, USER_LOG_PREFIX
from fechatter_core.settings import NatsSettings

log = logging.getLogger(__name__)

DAY = 24 * 3600


async def connect(settings: NatsSettings, *, name: str) -> NatsClient:
    client = NatsClient()

    async def _disconnected() -> None:
        if not client.is_closed:
            log.warning("nats disconnected; reconnecting")

    async def _reconnected() -> None:
        log.info("nats reconnected")

    async def _error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    await client.connect(
        settings.url,
        name=name,
        max_reconnect_attempts=-1,  # keep trying forever: a restarted nats-server must not kill the service
        reconnect_time_wait=0.5,
        connect_timeout=5,
        disconnected_cb=_disconnected,
        reconnected_cb=_reconnected,
        error_cb=_error,
    )
    return client


def domain_stream_config(name: str) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=DOMAIN_SUBJECTS,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * DAY,
        max_bytes=8 * 1024**3,
        discard=DiscardPolicy.OLD,
        duplicate_window=10 * 60,  # an outbox republish within 10 minutes is dropped by msg id
    )


def user_log_stream_config(name: str, *, retention_hours: int, per_user: int) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=[f"{USER_LOG_PREFIX}.*"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=retention_hours * 3600,
        max_msgs_per_subject=per_user,
        max_bytes=8 * 1024**3,
        discard=DiscardPolicy.OLD,
        duplicate_window=10 * 60,
    )


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or bring an existing one's limits in line with the config."""
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)
