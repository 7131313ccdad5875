"""ClickHouse access for analytics: chdb (the engine in-process, owned by this service alone) or a
clickhouse-server over HTTP. Both take the same SQL."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Protocol

from fechatter_core.settings import ClickHouseSettings

SCHEMA = [
    "CREATE DATABASE IF NOT EXISTS {db}",
    """CREATE TABLE IF NOT EXISTS {db}.events (
        event_id String,
        event_type LowCardinality(String),
        source LowCardinality(String),
        workspace_id UInt64,
        user_id UInt64,
        chat_id UInt64,
        occurred_at DateTime64(3, 'UTC'),
        received_at DateTime64(3, 'UTC') DEFAULT now64(3),
        payload String
    ) ENGINE = ReplacingMergeTree ORDER BY (event_type, occurred_at, event_id)""",
]


class AnalyticsStore(Protocol):
    async def query(self, sql: str) -> str: ...
    async def close(self) -> None: ...


class ChdbStore:
    def __init__(self, settings: ClickHouseSettings) -> None:
        from chdb import session

        Path(settings.path).mkdir(parents=True, exist_ok=True)
        self._session = session.Session(settings.path)
        # chdb sessions are not safe to share across threads; one query at a time.
        self._lock = threading.Lock()

    def _run(self, sql: str) -> str:
        with self._lock:
            return str(self._session.query(sql, "TabSeparated"))

    async def query(self, sql: str) -> str:
        return await asyncio.to_thread(self._run, sql)

    async def close(self) -> None:
        await asyncio.to_thread(self._session.close)


class ServerStore:
    def __init__(self, settings: ClickHouseSettings) -> None:
        import clickhouse_connect

        self._settings = settings
        self._client = clickhouse_connect.get_client(dsn=settings.url)

    async def query(self, sql: str) -> str:
        result = await asyncio.to_thread(self._client.command, sql)
        return str(result)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)


async def open_store(settings: ClickHouseSettings) -> AnalyticsStore:
    store: AnalyticsStore
    if settings.engine == "chdb":
        store = await asyncio.to_thread(ChdbStore, settings)
    else:
        store = await asyncio.to_thread(ServerStore, settings)
    for statement in SCHEMA:
        await store.query(statement.format(db=settings.database))
    return store
