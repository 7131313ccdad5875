"""Fan-out: domain events -> one entry per recipient in the per-user JetStream log.

The per-user log (subject ``notify.user.<id>``) is what an SSE connection replays from: its stream
sequence is the SSE event id. Writing it costs one small JetStream append per recipient and no Postgres
write. One durable pull consumer is shared by every notify replica. A process handles one batch at a time
and retries it until it is delivered before fetching more, so with one notify process every user's log
keeps the order of the domain stream. With several replicas two partial batches can be in flight at once
(``max_ack_pending`` bounds events, not batches), so events of different batches may reach a user's log
out of order: nothing is lost or duplicated, and clients order messages by ``seq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

import msgspec
import sqlalchemy as sa
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from fechatter_core.db.schema import chat_members
from fechatter_core.events import Event, decode_event, user_log_subject

log = logging.getLogger(__name__)

DURABLE = "notify-fanout"
BATCH = 256

fanned_out = Counter("notify_fanout_events_total", "Domain events fanned out to user logs", ["type"])
log_writes = Counter("notify_user_log_writes_total", "Entries appended to per-user logs")

# Domain event type -> SSE event name (API.md "Realtime").
SSE_NAMES = {
    "message.created": "new_message",
    "message.updated": "message_updated",
    "message.deleted": "message_deleted",
    "message.read": "message_read",
    "message.reaction_added": "reaction_added",
    "message.reaction_removed": "reaction_removed",
    "message.pinned": "message_pinned",
    "message.unpinned": "message_unpinned",
    "chat.created": "chat_created",
    "chat.updated": "chat_updated",
    "chat.member_added": "chat_member_added",
    "chat.member_removed": "chat_member_removed",
    "chat.member_updated": "chat_member_updated",
}


class UserLogEntry(msgspec.Struct):
    event: str
    data: dict[str, Any]
    occurred_at: str
    event_id: str
    # A stream is scoped to its token's workspace, like every REST query.
    workspace_id: int


_encode = msgspec.json.Encoder().encode


class MembershipCache:
    """Chat members, cached; entries are dropped as membership events pass through the ordered stream, so
    each event is fanned out to the members of its moment (a message sent just before a removal still
    reaches the removed member). The cache is exact only while this process sees every event: the fan-out
    clears it whenever the stream skips ahead (another replica handled the events between)."""

    def __init__(self, engine: AsyncEngine, size: int = 10_000) -> None:
        self._engine = engine
        self._size = size
        self._members: OrderedDict[int, frozenset[int]] = OrderedDict()

    def invalidate(self, chat_id: int) -> None:
        self._members.pop(chat_id, None)

    def clear(self) -> None:
        self._members.clear()

    async def members(self, chat_id: int) -> frozenset[int]:
        cached = self._members.get(chat_id)
        if cached is not None:
            self._members.move_to_end(chat_id)
            return cached
        async with self._engine.connect() as conn:
            ids = frozenset(
                (
                    await conn.scalars(
                        sa.select(chat_members.c.user_id).where(chat_members.c.chat_id == chat_id)
                    )
                ).all()
            )
        self._members[chat_id] = ids
        if len(self._members) > self._size:
            self._members.popitem(last=False)
        return ids


async def recipients(event: Event, cache: MembershipCache) -> set[int]:
    if event.chat_id is None:
        return set()
    if event.type.startswith("chat."):
        cache.invalidate(event.chat_id)
    if event.type == "message.read":
        # Read positions go to the reader's other devices.
        return {event.actor_id} if event.actor_id else set()
    users = set(await cache.members(event.chat_id))
    if event.type == "chat.member_removed":
        removed = event.data.get("user_id")
        if isinstance(removed, int):
            users.add(removed)  # the removed member learns about it too
    return users


class Fanout:
    def __init__(
        self, js: JetStreamContext, engine: AsyncEngine, *, domain_stream: str, user_stream: str
    ) -> None:
        self._js = js
        self._cache = MembershipCache(engine)
        self._last_seq: int | None = None
        self._domain_stream = domain_stream
        self._user_stream = user_stream
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sub = await self._js.pull_subscribe(
            "fechatter.>",
            durable=DURABLE,
            stream=self._domain_stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.NEW,
                ack_wait=10,
                max_ack_pending=BATCH,
                max_deliver=-1,
            ),
        )
        self._task = asyncio.create_task(self._run(), name="notify-fanout")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                batch = await self._sub.fetch(BATCH, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fan-out fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            await self._deliver_until_done(batch)

    async def _deliver_until_done(self, batch: list[Any]) -> None:
        """Retry this batch until it is delivered, before fetching anything newer: moving on would put later
        events ahead of these in every user's log. Msg ids make a repeated append a no-op."""
        delay = 0.5
        while True:
            try:
                await self._deliver(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fan-out of %d events failed, retrying in %.1fs: %s", len(batch), delay, exc)
                for msg in batch:  # keep JetStream from handing them to another replica meanwhile
                    with contextlib.suppress(Exception):
                        await msg.in_progress()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _follow(self, stream_seq: int) -> None:
        """Clear the membership cache unless this event directly follows the last one this process saw:
        in a gap, another replica may have handled a membership change."""
        if self._last_seq is not None and stream_seq != self._last_seq + 1:
            self._cache.clear()
        self._last_seq = stream_seq

    async def _deliver(self, batch: list[Any]) -> None:
        futures = []
        for msg in batch:
            self._follow(msg.metadata.sequence.stream)
            try:
                event = decode_event(msg.data)
            except msgspec.DecodeError:
                log.error("dropping undecodable event on %s", msg.subject)
                continue
            name = SSE_NAMES.get(event.type)
            if name is None:
                continue
            entry = _encode(
                UserLogEntry(
                    event=name,
                    data=event.data,
                    occurred_at=event.occurred_at,
                    event_id=event.id,
                    workspace_id=event.workspace_id,
                )
            )
            for user_id in sorted(await recipients(event, self._cache)):
                futures.append(
                    await self._js.publish_async(
                        user_log_subject(user_id), entry, headers={"Nats-Msg-Id": f"{event.id}:{user_id}"}
                    )
                )
            fanned_out.labels(event.type).inc()
        if futures:
            await asyncio.wait_for(asyncio.gather(*futures), timeout=10)
            log_writes.inc(len(futures))
        for msg in batch:
            await msg.ack()
