"""The gateway's connection pool against a real HTTP server (tests/upstream_stub.py): the cap per
instance, the bounded wait and queue, slots given back however a connection ends, streams outside the
cap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from gateway.upstream import Connection, Pool, PoolExhausted
from tests.upstream_stub import UpstreamStub


@pytest.fixture
async def stub() -> AsyncIterator[UpstreamStub]:
    server = UpstreamStub("chat")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def exchange(conn: Connection) -> int:
    """One GET on ``conn``, read to its end: the connection can then go back to the pool."""
    conn.begin(b"GET /api/who HTTP/1.1\r\nhost: stub\r\n\r\n", head_only=False)
    await conn.response_head(5)
    conn.take_body()
    while await conn.next_chunk(5) is not None:
        pass
    return conn.status


async def test_a_request_beyond_the_cap_gets_the_next_connection_that_comes_free(stub: UpstreamStub) -> None:
    pool = Pool(2.0, max_connections=1, wait_seconds=2.0)
    first = await pool.acquire(stub.url)
    assert await exchange(first) == 200
    waiting = asyncio.ensure_future(pool.acquire(stub.url))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    pool.release(stub.url, first)
    handed = await waiting
    assert handed is first and handed.reused
    assert pool.open_connections(stub.url) == 1

    # A connection that ends (here: closed after a failure) passes its slot to the next waiting request.
    waiting = asyncio.ensure_future(pool.acquire(stub.url))
    await asyncio.sleep(0.05)
    handed.close()
    fresh = await waiting
    assert fresh is not handed and not fresh.reused
    assert await exchange(fresh) == 200
    assert pool.open_connections(stub.url) == 1
    pool.release(stub.url, fresh)
    pool.close()


async def test_the_wait_and_the_queue_are_bounded(stub: UpstreamStub) -> None:
    pool = Pool(2.0, max_connections=1, wait_seconds=0.3, max_waiting=1)
    busy = await pool.acquire(stub.url)
    started = time.monotonic()
    with pytest.raises(PoolExhausted, match="stayed busy"):
        await pool.acquire(stub.url)
    assert 0.25 < time.monotonic() - started < 2
    waiting = asyncio.ensure_future(pool.acquire(stub.url))
    await asyncio.sleep(0.05)
    with pytest.raises(PoolExhausted, match="already wait"):
        await pool.acquire(stub.url)  # the queue is full: at once
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    busy.close()
    assert pool.open_connections(stub.url) == 0
    pool.close()


async def test_a_cancelled_waiter_or_a_connection_the_service_closed_leaks_no_slot(
    stub: UpstreamStub,
) -> None:
    pool = Pool(2.0, max_connections=2, wait_seconds=2.0)
    a, b = await pool.acquire(stub.url), await pool.acquire(stub.url)
    for conn in (a, b):
        assert await exchange(conn) == 200
    waiting = asyncio.ensure_future(pool.acquire(stub.url))
    await asyncio.sleep(0.05)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    pool.release(stub.url, a)
    pool.release(stub.url, b)
    assert pool.open_connections(stub.url) == 2  # both idle
    # The service goes away: its idle connections close, and their slots with them.
    await stub.stop()
    deadline = time.monotonic() + 5
    while pool.open_connections(stub.url) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert pool.open_connections(stub.url) == 0
    pool.close()


async def test_streams_and_fresh_connections(stub: UpstreamStub) -> None:
    pool = Pool(2.0, max_connections=1, wait_seconds=0.2)
    streams = [await pool.acquire(stub.url, stream=True) for _ in range(3)]
    assert pool.open_connections(stub.url) == 0  # outside the cap
    kept = await pool.acquire(stub.url)
    assert await exchange(kept) == 200
    pool.release(stub.url, kept)
    # A new connection while an idle one holds the only slot: the idle one gives it up.
    fresh = await pool.acquire(stub.url, fresh=True)
    assert fresh is not kept and kept.closed
    assert pool.open_connections(stub.url) == 1
    for stream in streams:
        assert await exchange(stream) == 200
        pool.release(stub.url, stream)
        assert stream.closed  # a stream's connection is never kept
    pool.close()
