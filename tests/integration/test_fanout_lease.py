"""The fan-out lease against a real nats-server: one holder at a time, taken over when given back or when
it lapses, kept by its holder through a lost renewal, and a bucket made with another lease length put
right."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.js.client import JetStreamContext

from fechatter_stack.infra import nats_server_binary
from notify_server.leader import BUCKET, KEY, LEASE_SECONDS, STREAM, Lease
from tests.stackutil import free_ports


@pytest.fixture(scope="module")
def nats_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    (port,) = free_ports(1)
    store = tmp_path_factory.mktemp("nats")
    proc = subprocess.Popen(
        [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def js(nats_port: int, tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    for _ in range(100):
        try:
            nc = await nats.connect(f"nats://127.0.0.1:{nats_port}", max_reconnect_attempts=0)
            break
        except Exception:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("nats-server did not start")
    context = nc.jetstream()
    try:
        yield context
    finally:
        # Each test starts without a bucket.
        with contextlib.suppress(Exception):
            await context.delete_key_value(BUCKET)
        await nc.close()


async def test_one_holder_until_it_gives_the_lease_back(js: JetStreamContext) -> None:
    first, second = Lease(js, "a"), Lease(js, "b")
    await first.start()
    await second.start()
    assert await first.renew() and first.held()
    assert not await second.renew() and not second.held()
    assert await first.renew()  # renewing keeps it
    assert not await second.renew()
    await first.release()
    assert not first.held()
    assert await second.renew() and second.held()
    assert not await first.renew()


async def test_a_lease_not_renewed_lapses_and_another_takes_it(js: JetStreamContext) -> None:
    dead, standby = Lease(js, "dead"), Lease(js, "standby")
    await dead.start()
    await standby.start()
    assert await dead.renew()
    assert not await standby.renew()
    await asyncio.sleep(LEASE_SECONDS + 1.5)  # the holder died: no renewal
    assert await standby.renew()
    assert not await dead.renew()  # back from a pause, it finds the lease taken


async def test_a_holder_that_lost_track_of_its_revision_keeps_its_lease(js: JetStreamContext) -> None:
    holder, other = Lease(js, "holder"), Lease(js, "other")
    await holder.start()
    await other.start()
    assert await holder.renew()
    holder._revision = None  # a renewal that timed out after it was written
    assert await holder.renew()
    assert not await other.renew()


async def test_a_bucket_with_another_lease_length_is_put_right(js: JetStreamContext) -> None:
    await js.create_key_value(bucket=BUCKET, history=1)  # no TTL: a lease would never lapse
    lease = Lease(js, "a")
    await lease.start()
    info = await js.stream_info(STREAM)
    assert info.config.max_age == LEASE_SECONDS
    assert await lease.renew()
    kv = await js.key_value(BUCKET)
    assert (await kv.get(KEY)).value.startswith(b"a:")
