"""Hot-path statements sent straight to asyncpg, on connections of the engine's pool.

A SQLAlchemy Core statement is built, keyed, compiled and bridged through a greenlet on every call, and a
connection checked out with ``engine.connect()`` wraps every read in BEGIN ... ROLLBACK: two more round
trips. The requests served most often (history, send, the caller's own user) instead use an ``Sql``: the
text is written once, with ``:name`` parameters, turned into asyncpg's ``$n`` form once, and asyncpg's
per-connection prepared-statement cache parses and plans it once per connection.

``connect`` gives a pooled connection outside any transaction: at READ COMMITTED every statement of a
transaction takes its own snapshot anyway, so a read that holds no lock sees exactly what it would see
inside BEGIN ... ROLLBACK. ``transaction`` is for writes: BEGIN and COMMIT (or ROLLBACK) around the block.

An ``Sql`` also runs on a SQLAlchemy ``AsyncConnection`` (the rule it holds is then shared with code that
still uses Core): it runs on the same database connection, inside SQLAlchemy's transaction when there is
one.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class Row(asyncpg.Record):
    """A result row whose columns read as attributes too, like SQLAlchemy's rows, so the one function
    that shapes a row (views.py) takes either. Columns come first (a page of messages reads hundreds of
    them; a ``__getattr__`` would first fail the normal lookup each time), then the record's own methods."""

    def __getattribute__(self, name: str) -> Any:
        try:
            return asyncpg.Record.__getitem__(self, name)
        except KeyError:
            return object.__getattribute__(self, name)


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

Connection = AsyncConnection | asyncpg.Connection


class Sql:
    """One statement with ``:name`` parameters (``::type`` casts are left alone)."""

    __slots__ = ("names", "text")

    def __init__(self, text: str) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.text = _NAMED.sub(number, text)
        self.names = tuple(names)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        try:
            values = [params[name] for name in self.names]
        except KeyError:
            values = None
        if values is None or len(params) != len(self.names):
            unknown = sorted(set(params) - set(self.names))
            missing = sorted(set(self.names) - set(params))
            raise TypeError(f"statement parameters: unknown {unknown}, missing {missing}")
        return values

    async def all(self, conn: Connection, **params: Any) -> list[Row]:
        return await (await driver(conn)).fetch(self.text, *self.args(params), record_class=Row)

    async def one_or_none(self, conn: Connection, **params: Any) -> Row | None:
        return await (await driver(conn)).fetchrow(self.text, *self.args(params), record_class=Row)

    async def scalar(self, conn: Connection, **params: Any) -> Any:
        return await (await driver(conn)).fetchval(self.text, *self.args(params))

    async def execute(self, conn: Connection, **params: Any) -> str:
        return await (await driver(conn)).execute(self.text, *self.args(params))


async def driver(conn: Connection) -> asyncpg.Connection:
    """The asyncpg connection to run on. Under a SQLAlchemy connection that is in a transaction, that
    transaction is begun on the database first (SQLAlchemy sends BEGIN lazily, with its first statement),
    so the statement belongs to it."""
    if isinstance(conn, asyncpg.Connection):
        return conn
    fairy = await conn.get_raw_connection()
    adapted: Any = fairy.dbapi_connection
    if conn.in_transaction() and adapted._transaction is None and not adapted.autocommit:
        await adapted._start_transaction()
    return fairy.driver_connection  # type: ignore[return-value]


@asynccontextmanager
async def connect(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the engine's pool outside any transaction (see the module docstring)."""
    async with engine.connect() as conn:
        raw: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection  # type: ignore[assignment]
        # A connection that may be mid-statement (the request was cancelled, a statement timed out), left
        # inside a transaction, or broken must not go back to the pool: the pool knows nothing of what ran
        # on it here.
        try:
            yield raw
        except BaseException as exc:
            if isinstance(exc, TimeoutError) and not raw.is_closed():
                # The server is not answering: closed at once, not by a goodbye that would wait on it too.
                raw.terminate()
            if not isinstance(exc, Exception) or raw.is_closed() or raw.is_in_transaction():
                await conn.invalidate()
            raise
        if raw.is_closed() or raw.is_in_transaction():
            await conn.invalidate()


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction: committed when the block ends, rolled back when it raises."""
    async with connect(engine) as raw, atomic(raw):
        yield raw


@asynccontextmanager
async def atomic(raw: asyncpg.Connection) -> AsyncIterator[None]:
    """A transaction on ``raw`` (from ``connect``). After a statement that timed out there is no ROLLBACK
    to wait for, as the server would take as long again to answer it: the connection is closed at once,
    which ends the transaction on the server all the same (``connect`` then drops it from the pool)."""
    tr = raw.transaction()
    await tr.start()
    try:
        yield
    except TimeoutError:
        if not raw.is_closed():
            raw.terminate()
        raise
    except BaseException:
        if not raw.is_closed():
            await tr.rollback()
        raise
    await tr.commit()
