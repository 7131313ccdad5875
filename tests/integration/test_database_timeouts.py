"""A statement that runs past the database time limit, against the session's PostgreSQL: the server ends
it (answered 503 by the services), what its transaction wrote is gone, nothing of it runs on, and the pool
hands out a working connection next. (A server that does not answer at all is the e2e outage test's.)"""

from __future__ import annotations

import asyncpg
import pytest

from fechatter_core.db import sql
from fechatter_core.db.engine import create_engine
from fechatter_core.settings import DatabaseSettings
from fechatter_core.web import dependency_unavailable

SLEEPING = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(30)'"


async def test_a_write_past_the_time_limit_is_ended_by_the_server_and_undone(fresh_database: str) -> None:
    engine = create_engine(
        DatabaseSettings(url=fresh_database, pool_size=1, max_overflow=0, timeout_seconds=1)
    )
    try:
        async with sql.connect(engine) as conn:
            await conn.execute("CREATE TABLE notes (body text)")
            first_backend = await conn.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(asyncpg.exceptions.QueryCanceledError) as failure:
            async with sql.transaction(engine) as conn:
                await conn.execute("INSERT INTO notes VALUES ('written before the slow statement')")
                await conn.execute("SELECT pg_sleep(30)")
        assert dependency_unavailable(failure.value)
        async with sql.connect(engine) as conn:
            assert await conn.fetchval("SELECT count(*) FROM notes") == 0
            assert await conn.fetchval(SLEEPING) == 0
            # The connection is usable again: the same backend (pool_size 1), its transaction rolled back.
            assert await conn.fetchval("SELECT pg_backend_pid()") == first_backend
            assert not conn.is_in_transaction()
    finally:
        await engine.dispose()
