"""A fan-out process that dies while holding an event (fetched from the shared durable consumer, not yet
written to the user logs) must not let later events overtake it: JetStream hands the event out again
once its ack wait lapses, and every user's log still follows the order of the domain stream."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import nats
from nats.errors import TimeoutError as NatsTimeoutError

from fechatter_core.events import decode_event
from notify_server.fanout import DURABLE
from tests.conftest import create_chat, team
from tests.realtime import collect, metric, stream
from tests.sse import send
from tests.stackutil import RunningStack


def nats_url(stack: RunningStack) -> str:
    return f"nats://fechatter:{stack.secrets()['nats_password']}@127.0.0.1:{stack.port('NATS_PORT')}"


async def held_back_count(stack: RunningStack) -> float:
    return (
        await metric(f"http://127.0.0.1:{stack.port('NOTIFY_PORT')}", "notify_fanout_held_back_total") or 0.0
    )


async def test_an_event_held_by_a_dead_fanout_process_is_not_overtaken(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    sent: list[dict] = []
    held_back_before = await held_back_count(stack)
    async with stream(stack, bob) as live:
        await live.next("connected")
        # A second fan-out process joins the shared consumer, takes one event and dies without acking it.
        # JetStream gives each new event to the oldest waiting pull request, and notify renews its own
        # right after every event: so this process asks first, then a few events are sent at once.
        dying = await nats.connect(nats_url(stack))
        held = None
        try:
            sub = await dying.jetstream().pull_subscribe_bind(DURABLE, stream="FECHATTER_EVENTS")
            for attempt in range(20):
                fetching = asyncio.ensure_future(sub.fetch(1, timeout=2.0))
                await asyncio.sleep(0.05)  # the pull request is waiting before the events exist
                for burst in range(3):
                    response = await send(client, alice, chat["id"], f"before the crash {attempt}.{burst}")
                    assert response.status_code == 201, response.text
                    sent.append(response.json()["data"])
                with contextlib.suppress(NatsTimeoutError, TimeoutError):
                    got = await fetching
                    event = decode_event(got[0].data)
                    if event.chat_id == chat["id"] and event.type == "message.created":
                        held = event.data["id"]
                        break
            assert held is not None, "the second consumer never got an event"
        finally:
            await dying.close()  # dies holding the event, unacked
        for i in range(5):
            response = await send(client, alice, chat["id"], f"after the crash {i}")
            assert response.status_code == 201, response.text
            sent.append(response.json()["data"])
        got = await collect(live, "new_message", len(sent), timeout=60)
    assert held in [m["id"] for m in sent]
    assert [data["id"] for _, data in got] == [m["id"] for m in sent]
    # notify held the later events back until the lost one came round again.
    assert await held_back_count(stack) > held_back_before
