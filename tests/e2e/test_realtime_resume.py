"""Resume by Last-Event-ID: exactly what was missed, in order, then live; a backlog of 10,000 events."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import nats

from fechatter_core.events import MESSAGE_CREATED, encode_event, new_event
from tests.conftest import User, create_chat, team
from tests.realtime import collect, quiet, stream
from tests.sse import send
from tests.stackutil import RunningStack


async def last_id_after_one_message(
    stack: RunningStack, client: httpx.AsyncClient, sender: User, reader: User, chat_id: int
) -> str:
    """Open the reader's stream, let one message arrive, close it: the id a client would resume from."""
    async with stream(stack, reader) as live:
        await live.next("connected")
        await send(client, sender, chat_id, "seen live")
        last_id, _ = await live.next("new_message")
    assert last_id is not None
    return last_id


async def assert_resumes_with_exactly(
    stack: RunningStack,
    client: httpx.AsyncClient,
    reader: User,
    last_id: str,
    expected: list[dict],
    sender: User,
    chat_id: int,
) -> None:
    """Reconnect from ``last_id``: exactly ``expected`` (by message id, in order), once each, then live."""
    async with stream(stack, reader, last_event_id=last_id) as resumed:
        got = await collect(resumed, "new_message", len(expected), timeout=60)
        assert [data["id"] for _, data in got] == [m["id"] for m in expected]
        ids = [int(event_id) for event_id, _ in got]
        assert ids == sorted(set(ids)) and ids[0] > int(last_id)
        live = (await send(client, sender, chat_id, "live after resume")).json()["data"]
        _, data = await resumed.next("new_message", timeout=15)
        assert data["id"] == live["id"]
        assert [e for e in await quiet(resumed, 0.5) if e[1] == "new_message"] == []


async def test_resume_delivers_exactly_the_50_missed(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    last_id = await last_id_after_one_message(stack, client, alice, bob, chat["id"])
    missed = [(await send(client, alice, chat["id"], f"missed {i}")).json()["data"] for i in range(50)]
    await assert_resumes_with_exactly(stack, client, bob, last_id, missed, alice, chat["id"])


async def test_resume_is_repeatable_from_any_id(stack: RunningStack, client: httpx.AsyncClient) -> None:
    """A client that lost its connection in the middle of a replay resumes from the last id it saw."""
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    last_id = await last_id_after_one_message(stack, client, alice, bob, chat["id"])
    missed = [(await send(client, alice, chat["id"], f"m{i}")).json()["data"] for i in range(20)]
    async with stream(stack, bob, last_event_id=last_id) as first:
        part = await collect(first, "new_message", 7)
    middle_id = part[-1][0]
    await assert_resumes_with_exactly(stack, client, bob, middle_id, missed[7:], alice, chat["id"])


async def test_a_backlog_of_10000_events_replays_in_order(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    last_id = await last_id_after_one_message(stack, client, alice, bob, chat["id"])

    # 10,000 events straight into the domain stream (as the outbox publisher would put them there): the
    # fan-out and the replay are what is under test, and 10,000 HTTP sends would take minutes here.
    total = 10_000
    secrets = stack.secrets()
    nc = await nats.connect(
        f"nats://fechatter:{secrets['nats_password']}@127.0.0.1:{stack.port('NATS_PORT')}"
    )
    try:
        js = nc.jetstream()
        run = uuid.uuid4().hex[:8]
        for start in range(0, total, 1000):
            futures = []
            for n in range(start, start + 1000):
                event = new_event(
                    MESSAGE_CREATED,
                    workspace_id=alice.workspace_id,
                    actor_id=alice.id,
                    chat_id=chat["id"],
                    data={"id": -(n + 1), "chat_id": chat["id"], "seq": n + 1, "content": f"{run}-{n}"},
                )
                futures.append(
                    await js.publish_async(
                        MESSAGE_CREATED, encode_event(event), headers={"Nats-Msg-Id": event.id}
                    )
                )
            await asyncio.gather(*futures)
        # A backlog is what is already in the log when the client comes back: wait for the fan-out.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            last = await js.get_last_msg("FECHATTER_USER_EVENTS", f"notify.user.{bob.id}")
            if f"{run}-{total - 1}".encode() in (last.data or b""):
                break
            await asyncio.sleep(0.5)
    finally:
        await nc.close()

    started = time.monotonic()
    async with stream(stack, bob, last_event_id=last_id) as resumed:
        got = await collect(resumed, "new_message", total, timeout=180)
    assert [data["content"] for _, data in got] == [f"{run}-{n}" for n in range(total)]
    ids = [int(event_id) for event_id, _ in got]
    assert ids == sorted(set(ids))  # increasing, no duplicate
    assert time.monotonic() - started < 180
