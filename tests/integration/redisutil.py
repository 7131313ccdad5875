"""A redis-server of the integration tests' own (a password, no persistence), and clients of it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from fechatter_core.pipelined_redis import RedisClient, RedisFailure
from fechatter_stack.infra import redis_server_binary
from tests.stackutil import free_ports

PASSWORD = "client-test-password"


@contextlib.contextmanager
def redis_process(directory: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    (port,) = free_ports(1)
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    argv += ["--requirepass", PASSWORD, "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield port, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
            proc.terminate()
            proc.wait(10)


async def connected(port: int, **options: str | float) -> RedisClient:
    url = str(options.pop("url", f"redis://127.0.0.1:{port}/3"))
    client = RedisClient(url, password=PASSWORD, **options)  # type: ignore[arg-type]
    for _ in range(100):
        with contextlib.suppress(RedisFailure):
            await client.ping()
            return client
        await asyncio.sleep(0.05)
    raise AssertionError("redis-server did not start")
