"""Slow clients and retention, on a stack with a tiny per-connection buffer and a tiny per-user log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import nats
import pytest

from fechatter_core.events import now_iso
from tests.conftest import User, create_chat, team
from tests.e2e.test_realtime_resume import last_id_after_one_message
from tests.realtime import collect, stream
from tests.sse import send
from tests.stackutil import RunningStack, make_stack

BUFFER = 8
RETENTION = 60


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = make_stack(
        tmp_path_factory.mktemp("small-stack") / "data",
        SSE_BUFFER_SIZE=str(BUFFER),
        SSE_RETENTION_PER_USER=str(RETENTION),
        SSE_RETRY_MS="1500",
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


async def notify_metric(stack: RunningStack, name: str) -> float:
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"http://127.0.0.1:{stack.port('NOTIFY_PORT')}/metrics")).text
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


@contextlib.asynccontextmanager
async def stalled_stream(stack: RunningStack, user: User, last_id: str) -> AsyncIterator[httpx.Response]:
    """The user's stream, opened and then read by nobody until the test reads it."""
    stalled = httpx.AsyncClient(base_url=stack.url, timeout=httpx.Timeout(10, read=60))
    try:
        response = await stalled.send(
            stalled.build_request("GET", "/sse", headers={**user.auth, "Last-Event-ID": last_id}), stream=True
        )
        assert response.status_code == 200
        try:
            yield response
        finally:
            await response.aclose()
    finally:
        await stalled.aclose()


@contextlib.asynccontextmanager
async def big_entries(stack: RunningStack, user: User, chat_id: int) -> AsyncIterator[BigEntries]:
    """Entries of half a megabyte straight into the user's log (as the fan-out writes them): a few dozen
    fill every socket buffer between notify and the client, which messages of 4,000 characters would need
    thousands of sends to do."""
    secrets = stack.secrets()
    nc = await nats.connect(
        f"nats://fechatter:{secrets['nats_password']}@127.0.0.1:{stack.port('NATS_PORT')}"
    )
    try:
        yield BigEntries(nc, user, chat_id)
    finally:
        await nc.close()


class BigEntries:
    def __init__(self, nc: nats.NATS, user: User, chat_id: int) -> None:
        self.nc, self.user, self.chat_id = nc, user, chat_id
        self.sent: list[dict] = []

    async def publish(self) -> None:
        n = len(self.sent)
        entry = {
            "event": "new_message",
            "data": {"id": -(n + 1), "chat_id": self.chat_id, "seq": n + 2, "content": "x" * 500_000},
            "occurred_at": now_iso(),
            "event_id": str(uuid.uuid4()),
            "workspace_id": self.user.workspace_id,
        }
        await self.nc.jetstream().publish(f"notify.user.{self.user.id}", json.dumps(entry).encode())
        self.sent.append(entry["data"])


async def test_retention_beyond_the_log_gives_resync_required(small_stack: RunningStack) -> None:
    stack = small_stack
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        alice, bob = await team(client)
        chat = await create_chat(client, alice, [bob])
        last_id = await last_id_after_one_message(stack, client, alice, bob, chat["id"])
        before = await notify_metric(stack, "notify_resyncs_total")
        for i in range(RETENTION + 5):
            assert (await send(client, alice, chat["id"], f"m{i}")).status_code == 201
        await asyncio.sleep(1.0)  # let the fan-out push the old entries out of bob's log
        async with stream(stack, bob, last_event_id=last_id) as resumed:
            first = await resumed.events.get()
            assert first[1] == "resync_required" and first[0] is None
            assert first[2] == {"reason": "history_expired"}
            # Live delivery goes on after it.
            live = (await send(client, alice, chat["id"], "after resync")).json()["data"]
            _, data = await resumed.next("new_message")
            assert data["id"] == live["id"]
        assert await notify_metric(stack, "notify_resyncs_total") == before + 1


async def test_the_retry_hint_comes_first(small_stack: RunningStack) -> None:
    async with httpx.AsyncClient(base_url=small_stack.url, timeout=30) as client:
        (user,) = await team(client, 1)
        async with client.stream("GET", "/sse", headers=user.auth) as response:
            first = await response.aiter_lines().__anext__()
    assert first == "retry: 1500"


async def test_a_client_that_stops_reading_is_dropped_and_resumes_without_loss(
    small_stack: RunningStack,
) -> None:
    stack = small_stack
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        alice, bob = await team(client)
        chat = await create_chat(client, alice, [bob])
        last_id = await last_id_after_one_message(stack, client, alice, bob, chat["id"])
        disconnects = await notify_metric(stack, "notify_sse_slow_client_disconnects_total")

        # Bob's client opens its stream and then reads nothing while big messages keep coming.
        async with stalled_stream(stack, bob, last_id) as response:
            async with big_entries(stack, bob, chat["id"]) as entries:
                deadline = time.monotonic() + 60
                while await notify_metric(stack, "notify_sse_slow_client_disconnects_total") == disconnects:
                    assert time.monotonic() < deadline, "the stalled client was never disconnected"
                    assert len(entries.sent) < RETENTION - 5, "the log must hold what the client missed"
                    await entries.publish()
                    await asyncio.sleep(0.05)
            sent = entries.sent

            # What did reach the client before the server gave up, then resume from its last id.
            got: list[tuple[str, dict]] = []
            event_id, data_lines = None, []
            try:
                async for line in response.aiter_lines():
                    if line.startswith("id:"):
                        event_id = line[3:].strip()
                    elif line.startswith("data:"):
                        data_lines.append(line[5:].strip())
                    elif line == "":
                        if data_lines and event_id:
                            got.append((event_id, json.loads("".join(data_lines))))
                        event_id, data_lines = None, []
            except httpx.HTTPError:
                pass  # the connection was cut mid-frame
        messages = [(i, d) for i, d in got if "seq" in d]
        assert len(messages) < len(sent)
        resume_from = messages[-1][0] if messages else last_id
        async with stream(stack, bob, last_event_id=resume_from) as resumed:
            rest = await collect(resumed, "new_message", len(sent) - len(messages), timeout=30)
        assert [d["id"] for _, d in messages + rest] == [m["id"] for m in sent]


WRITE_TIMEOUT = 2


@pytest.fixture(scope="module")
def deadline_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = make_stack(
        tmp_path_factory.mktemp("deadline-stack") / "data", SSE_WRITE_TIMEOUT_SECONDS=str(WRITE_TIMEOUT)
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


async def test_a_write_blocked_past_the_deadline_ends_the_stream_before_its_buffer_fills(
    deadline_stack: RunningStack,
) -> None:
    """Bob stops reading while a few dozen big events come (far fewer than the 1,000 his buffer holds):
    the sockets fill, a write blocks, and after the write timeout the stream is cut off; resuming from the
    last id he had gets everything."""
    stack = deadline_stack
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        alice, bob = await team(client)
        chat = await create_chat(client, alice, [bob])
        last_id = await last_id_after_one_message(stack, client, alice, bob, chat["id"])
        disconnects = await notify_metric(stack, "notify_sse_slow_client_disconnects_total")
        async with stalled_stream(stack, bob, last_id):
            async with big_entries(stack, bob, chat["id"]) as entries:
                for _ in range(60):
                    await entries.publish()
                    await asyncio.sleep(0.02)
            deadline = time.monotonic() + 30
            while await notify_metric(stack, "notify_sse_slow_client_disconnects_total") == disconnects:
                assert time.monotonic() < deadline, "the blocked stream was never cut off"
                await asyncio.sleep(0.5)
        sent = entries.sent
        log = (stack.data_dir / "logs" / "notify_server.log").read_text()
        assert f"a write blocked for {WRITE_TIMEOUT} s" in log
        assert "events buffered" not in log

        async with stream(stack, bob, last_event_id=last_id) as resumed:
            got = await collect(resumed, "new_message", len(sent), timeout=60)
        assert [d["id"] for _, d in got] == [m["id"] for m in sent]
