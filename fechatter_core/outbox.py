"""Transactional outbox: an event is stored with the change that caused it, then published to JetStream.

``record`` runs inside the caller's transaction. After commit the caller wakes the publisher, which sends
every pending row in id order and deletes what JetStream acknowledged. A periodic sweep covers rows left
by a crash or by a replica that died. One publisher at a time holds a Postgres advisory lock and sends
committed rows in id order. So events written under one row lock reach the stream in commit order: the
messages of a chat (sends lock the chat row), and the life of one message (created, then edits and
deletes, which lock the message row). Events about different messages of a chat may interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from nats.js.client import JetStreamContext
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from fechatter_core.db.sql import Connection, Sql, transaction
from fechatter_core.events import Event, encode_event

log = logging.getLogger(__name__)

_PUBLISHER_LOCK = 0x0FEC_0B0C  # pg advisory lock id shared by every replica's publisher
_LOCK_BUSY = -1

events_published = Counter("fechatter_outbox_published_total", "Outbox events published to JetStream")
publish_failures = Counter("fechatter_outbox_publish_failures_total", "Outbox publish attempts that failed")
outbox_lag = Gauge("fechatter_outbox_pending", "Outbox rows seen pending at the last publish pass")


_RECORD = Sql("INSERT INTO outbox (event_id, subject, payload) VALUES (:event_id, :subject, :payload)")
_LOCK = Sql("SELECT pg_try_advisory_xact_lock(:lock)")
_PENDING = Sql("SELECT id, event_id, subject, payload FROM outbox ORDER BY id LIMIT :limit")
_PUBLISHED = Sql("DELETE FROM outbox WHERE id = ANY(CAST(:ids AS bigint[]))")


async def record(conn: Connection, event: Event) -> None:
    """Store ``event`` in the caller's transaction (a SQLAlchemy or an asyncpg connection)."""
    await _RECORD.execute(
        conn, event_id=uuid.UUID(event.id), subject=event.subject, payload=encode_event(event)
    )


class OutboxPublisher:
    def __init__(
        self, engine: AsyncEngine, js: JetStreamContext, *, batch_size: int = 500, interval: float = 1.0
    ) -> None:
        self._engine = engine
        self._js = js
        self._batch_size = batch_size
        self._interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-publisher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()
            try:
                while True:
                    published = await self.publish_pending()
                    if published == _LOCK_BUSY:
                        # Another replica is publishing; our rows may have committed after its read.
                        await asyncio.sleep(0.02)
                    elif published < self._batch_size:
                        break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                publish_failures.inc()
                log.warning("outbox publish failed, will retry: %s", exc)
                await asyncio.sleep(self._interval)

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published, or ``_LOCK_BUSY``."""
        async with transaction(self._engine) as conn:
            if not await _LOCK.scalar(conn, lock=_PUBLISHER_LOCK):
                return _LOCK_BUSY
            rows = await _PENDING.all(conn, limit=self._batch_size)
            outbox_lag.set(len(rows))
            if not rows:
                return 0
            futures = [
                await self._js.publish_async(
                    row.subject, row.payload, headers={"Nats-Msg-Id": str(row.event_id)}
                )
                for row in rows
            ]
            await asyncio.wait_for(asyncio.gather(*futures), timeout=10)
            await _PUBLISHED.execute(conn, ids=[row.id for row in rows])
            events_published.inc(len(rows))
            return len(rows)
