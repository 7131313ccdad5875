"""The Alembic revisions build, tear down and rebuild a database that matches the code's tables."""

from __future__ import annotations

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from fechatter_core.db.engine import async_url
from fechatter_core.db.schema import metadata
from tests.integration.conftest import alembic
from tests.stackutil import REPO_ROOT


async def tables(database_url: str) -> set[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {row["tablename"] for row in rows}


async def schema_diff(database_url: str) -> list:
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync_conn: compare_metadata(
                    MigrationContext.configure(sync_conn, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()


def head_and_previous() -> tuple[str, str | None]:
    scripts = ScriptDirectory.from_config(Config(str(REPO_ROOT / "alembic.ini")))
    head = scripts.get_current_head()
    assert head is not None
    previous = scripts.get_revision(head).down_revision
    assert previous is None or isinstance(previous, str)
    return head, previous


async def test_upgrade_downgrade_upgrade_matches_the_schema(fresh_database: str) -> None:
    expected = set(metadata.tables)
    assert await tables(fresh_database) == set()

    up = alembic(fresh_database, "upgrade", "head")
    assert up.returncode == 0, up.stdout + up.stderr
    assert await tables(fresh_database) == expected | {"alembic_version"}
    current = alembic(fresh_database, "current")
    assert current.returncode == 0, current.stdout + current.stderr
    head, previous = head_and_previous()
    assert f"{head} (head)" in current.stdout

    down = alembic(fresh_database, "downgrade", "-1")
    assert down.returncode == 0, down.stdout + down.stderr
    after_down = alembic(fresh_database, "current")
    if previous is None:
        assert await tables(fresh_database) == {"alembic_version"}
    else:
        assert previous in after_down.stdout and "(head)" not in after_down.stdout
        assert await tables(fresh_database) <= expected | {"alembic_version"}

    again = alembic(fresh_database, "upgrade", "head")
    assert again.returncode == 0, again.stdout + again.stderr
    assert await tables(fresh_database) == expected | {"alembic_version"}

    diff = await schema_diff(fresh_database)
    assert diff == [], "\n".join(map(repr, diff))


async def test_upgrade_head_twice_is_a_no_op(fresh_database: str) -> None:
    # `make run` migrates on every start: a second run must neither fail nor change anything.
    first = alembic(fresh_database, "upgrade", "head")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Running upgrade  -> 0001" in first.stderr  # from an empty database, the first revision runs
    second = alembic(fresh_database, "upgrade", "head")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Running upgrade" not in second.stderr + second.stdout
    assert await schema_diff(fresh_database) == []
