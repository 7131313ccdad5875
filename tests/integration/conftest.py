"""Fixtures of the integration tests: a fresh, empty database on the session's PostgreSQL, and Alembic run
on it as ``make db-setup`` runs it; a redis-server of their own."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.integration.redisutil import redis_process
from tests.stackutil import REPO_ROOT, RunningStack


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    with redis_process(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
async def fresh_database(stack: RunningStack) -> AsyncIterator[str]:
    name = f"migcheck_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(stack.database_url("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield stack.database_url(name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def connection(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the fresh database, for tests that write rows by plain SQL."""
    conn = await asyncpg.connect(fresh_database)
    try:
        yield conn
    finally:
        await conn.close()


def alembic(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", "alembic.ini", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
