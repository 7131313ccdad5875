"""The gateway's Redis client against a real redis-server: counting scripts, many commands in flight on
one connection, passwords and databases, and a Redis that stops answering."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from fechatter_core.pipelined_redis import RedisClient, RedisFailure
from fechatter_core.ratelimit import MULTI_WINDOW_SCRIPT, window_counts
from tests.integration.redisutil import connected
from tests.stackutil import free_ports


async def test_the_window_script_counts_and_many_commands_share_one_connection(
    redis_server: tuple[int, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port, _ = redis_server
    client = await connected(port)
    key = f"rl:test:{tmp_path.name}"
    rules = [(key, 150, 60), (key + ":b", 1000, 30)]
    keys, windows = [k for k, _, _ in rules], [w for _, _, w in rules]
    # The first call loads the script (EVALSHA fails with NOSCRIPT once), the rest run it by its hash.
    await client.execute("SCRIPT", "FLUSH")
    limits = [limit for _, limit, _ in rules]
    args = [*windows, *limits, 0, 0]
    replies = await asyncio.gather(*(client.script(MULTI_WINDOW_SCRIPT, keys, args) for _ in range(200)))
    counts = sorted(int(reply[0]) for reply in replies)
    assert counts == list(range(1, 201))
    last = window_counts(max(replies, key=lambda reply: int(reply[0])), len(keys))
    assert [(count, taken) for count, taken, _ in last] == [(200, 0), (200, 0)]
    # Milliseconds left in each key's own window, which began at the first count.
    assert 59_000 < last[0][2] <= 60_000 and 29_000 < last[1][2] <= 30_000
    # Requests taken ahead are added to the count, never past the limit, and never on a first count.
    ahead = window_counts(await client.script(MULTI_WINDOW_SCRIPT, keys, [*windows, *limits, 50, 50]), 2)
    assert [(count, taken) for count, taken, _ in ahead] == [(201, 0), (201, 50)]
    ahead = window_counts(await client.script(MULTI_WINDOW_SCRIPT, keys, [*windows, *limits, 50, 900]), 2)
    assert [(count, taken) for count, taken, _ in ahead] == [(202, 0), (252, 748)]
    assert int(await client.execute("GET", keys[1])) == 1000
    first = window_counts(await client.script(MULTI_WINDOW_SCRIPT, [key + ":c"], [60, 100, 10]), 1)
    assert [(count, taken) for count, taken, _ in first] == [(1, 0)]
    with pytest.raises(ValueError, match="expected 6 numbers"):
        window_counts([1, 2], len(keys))
    # The database of the URL was selected, and only one connection was opened for all of it.
    assert await client.execute("EXISTS", key) == 1
    clients = (await client.execute("CLIENT", "LIST")).decode().splitlines()
    assert len([line for line in clients if "db=3" in line]) == 1
    await client.aclose()


async def test_commands_written_together_each_get_their_own_reply(
    redis_server: tuple[int, subprocess.Popen[bytes]],
) -> None:
    """Commands made in one turn of the event loop go out in one write; each caller still gets the reply
    to its own command, whatever their mix."""
    port, _ = redis_server
    client = await connected(port)
    calls = [
        client.execute("ECHO", f"call {i}") if i % 3 else client.execute("INCRBY", "n", i) for i in range(300)
    ]
    replies = await asyncio.gather(*calls)
    for i, reply in enumerate(replies):
        if i % 3:
            assert reply == f"call {i}".encode()
        else:
            assert isinstance(reply, int)
    assert await client.execute("GET", "n") == str(sum(range(0, 300, 3))).encode()
    await client.aclose()


async def test_a_wrong_password_or_a_bad_url_fails_clearly(
    redis_server: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, _ = redis_server
    wrong = RedisClient(f"redis://127.0.0.1:{port}/0", password="not-it")
    with pytest.raises(RedisFailure, match=r"WRONGPASS|invalid"):
        await wrong.ping()
    with pytest.raises(ValueError, match="redis://"):
        RedisClient("http://127.0.0.1:6379")
    closed = RedisClient(f"redis://127.0.0.1:{free_ports(1)[0]}/0", timeout=0.5)
    with pytest.raises(RedisFailure, match="no connection"):
        await closed.ping()


async def test_a_redis_that_stops_answering_fails_in_time_and_is_used_again_after(
    redis_server: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, proc = redis_server
    client = await connected(port, timeout=0.3)
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(*(client.ping() for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, RedisFailure) for r in results), results
        assert loop.time() - started < 2
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    await client.ping()  # on a new connection
    assert await client.execute("SET", "after-stop", "yes") == b"OK"
    await client.aclose()
