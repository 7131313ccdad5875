"""Fan-out: domain events -> one entry per recipient in the per-user JetStream log.

The per-user log (subject ``notify.user.<id>``) is what an SSE connection replays from: its stream
sequence is the SSE event id. Writing it costs one small JetStream append per recipient and no Postgres
write. One durable pull consumer is shared by every notify replica; the one holding the fan-out lease
(``notify_server.leader``) fetches from it, the others stand by. Every user's log keeps the order of the
domain stream, whichever process fans an event out: a process writes a run of events only once every older
event has been written (the consumer's ack floor has reached it). An event held by a process that died is
handed out again by JetStream when its ack wait lapses; the events after it wait for it rather than
overtake it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

import msgspec
import sqlalchemy as sa
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from fechatter_core.db.schema import chat_members
from fechatter_core.events import DOMAIN_SUBJECTS, Event, decode_event, user_log_subject
from notify_server.leader import LEASE_SECONDS, Lease

log = logging.getLogger(__name__)

DURABLE = "notify-fanout"
BATCH = 256
# Seconds before JetStream hands an unacked event to another process: how long the events after it wait
# when a process dies holding one.
ACK_WAIT = 10.0
FETCH_TIMEOUT = 1.0
WAITING_FETCH_TIMEOUT = 0.05
# A loop that has not moved for this long gives the lease up, so that another process takes over.
STUCK_AFTER = 2 * ACK_WAIT
PUBLISH_WAIT = 10.0
# Held back this long, a run is written anyway (and logged): a last resort against a wait that cannot end,
# such as a stream that skips numbers below events already acked out of order.
MAX_HOLD = 3 * ACK_WAIT

fanned_out = Counter("notify_fanout_events_total", "Domain events fanned out to user logs", ["type"])
log_writes = Counter("notify_user_log_writes_total", "Entries appended to per-user logs")
leading = Gauge("notify_fanout_leader", "1 while this process holds the fan-out lease")
forced = Counter(
    "notify_fanout_forced_total", "Runs written after waiting the longest allowed for older events"
)
held_back = Counter(
    "notify_fanout_held_back_total",
    "Times fetched events were held back until an older one was written (by another process or a dead one)",
)

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
    "workspace.member_removed": "workspace_member_removed",
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
    if event.type == "workspace.member_removed":
        # The person's own devices, so their clients leave the workspace; the others learn through the
        # chat_member_removed of each chat they shared.
        removed = event.data.get("user_id")
        return {removed} if isinstance(removed, int) else set()
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
        self,
        js: JetStreamContext,
        engine: AsyncEngine,
        *,
        domain_stream: str,
        user_stream: str,
        lease: Lease,
    ) -> None:
        self._js = js
        self._lease = lease
        self._cache = MembershipCache(engine)
        self._last_seq: int | None = None
        self._domain_stream = domain_stream
        self._user_stream = user_stream
        self._tasks: list[asyncio.Task[None]] = []
        # Fetched, not yet written to the user logs, by domain-stream sequence.
        self._held: dict[int, Msg] = {}
        # Every event up to this domain-stream sequence is in the user logs (None: not known yet).
        self._done_through: int | None = None
        self._held_since: float | None = None  # when the held events began to wait for older ones
        self._progress_at = 0.0  # the loop's last step: held events are kept only while it moves
        self._stopping = False

    async def start(self) -> None:
        self._sub = await self._js.pull_subscribe(
            "fechatter.>",
            durable=DURABLE,
            stream=self._domain_stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.NEW,
                ack_wait=ACK_WAIT,
                max_ack_pending=BATCH,
                max_deliver=-1,
            ),
        )
        await self._lease.start()
        await self._renew()
        self._tasks = [
            asyncio.create_task(self._run(), name="notify-fanout"),
            asyncio.create_task(self._keep_held(), name="notify-fanout-keepalive"),
            asyncio.create_task(self._lead(), name="notify-fanout-lease"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        if not self._tasks:
            return
        run, keep, lead = self._tasks
        for task in (lead, keep):
            task.cancel()
        # The loop ends after its current step rather than being cancelled inside a fetch, which would drop
        # the messages that fetch had collected (handed out to this process, then in no one's hands).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(run), timeout=FETCH_TIMEOUT + 2)
        run.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Hand back what this process holds, so that another process (or the next start) takes it now
        # instead of after the ack wait. Unsubscribed first, so that nothing more arrives meanwhile.
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()
        await self._hand_back()
        await self._lease.release()
        leading.set(0)

    async def _renew(self) -> None:
        try:
            await self._lease.renew()
        except Exception as exc:
            log.warning("fan-out lease could not be renewed: %s", exc)
        leading.set(1 if self._lease.held() else 0)

    async def _lead(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            if self._tasks[0].done() or loop.time() - self._progress_at > STUCK_AFTER:
                # A loop that died or hangs must not keep the fan-out from another process.
                if self._lease.held():
                    log.error("fan-out loop stuck; giving the lease up")
                await self._lease.release()
                leading.set(0)
                continue
            await self._renew()

    async def _hand_back(self) -> None:
        """Nak what this process fetched and has not written, so that JetStream hands it out again now
        rather than after the ack wait."""
        for msg in [*self._held.values(), *_queued(self._sub)]:
            with contextlib.suppress(Exception):
                await msg.nak()
        self._held.clear()

    async def _stand_by(self) -> None:
        """Another process fans out: what this one fetched goes there now."""
        await self._hand_back()
        self._held_since = None
        self._done_through = None  # whatever was written meanwhile was written elsewhere

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._progress_at = loop.time()
            if not self._lease.held():
                await self._stand_by()
                await asyncio.sleep(LEASE_SECONDS / 3)
                continue
            await self._fetch()
            run = await self._ready()
            if not run:
                continue
            await self._deliver_until_done(run)
            for msg in run:
                self._held.pop(msg.metadata.sequence.stream, None)
            self._done_through = run[-1].metadata.sequence.stream

    async def _fetch(self) -> None:
        # While held events wait for an older one, keep asking: that event comes back in a fetch.
        timeout = WAITING_FETCH_TIMEOUT if self._held else FETCH_TIMEOUT
        try:
            batch = await self._sub.fetch(max(1, BATCH - len(self._held)), timeout=timeout)
        except (NatsTimeoutError, TimeoutError):
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("fan-out fetch failed: %s", exc)
            await asyncio.sleep(0.5)
            return
        for msg in batch:
            self._held[msg.metadata.sequence.stream] = msg

    async def _ready(self) -> list[Msg]:
        """The held events that may be written now, oldest first: a run of consecutive events that begins
        right after the last event written by any process."""
        if not self._held:
            return []
        seqs = sorted(self._held)
        if seqs[0] != (self._done_through or 0) + 1 and not await self._nothing_older_outstanding(seqs[0]):
            now = asyncio.get_running_loop().time()
            if self._held_since is None:
                self._held_since = now
                held_back.inc()
            if now - self._held_since < MAX_HOLD:
                return []
            forced.inc()
            log.warning(
                "fan-out: events from %d waited %.0f s for older ones; writing them now", seqs[0], MAX_HOLD
            )
        self._held_since = None
        run = [seqs[0]]
        for seq in seqs[1:]:
            if seq != run[-1] + 1 or len(run) == BATCH:
                break
            run.append(seq)
        return [self._held[seq] for seq in run]

    async def _nothing_older_outstanding(self, first: int) -> bool:
        """Whether every event before ``first`` is written: acked up to it, no event pending but the ones
        this process holds, or no event stored between the ack floor and it (the stream skips the numbers
        of messages removed from it, and the floor stays below such a gap while later events are pending)."""
        try:
            info = await self._sub.consumer_info()
            acked = (info.ack_floor.stream_seq if info.ack_floor else None) or 0
            if acked >= first - 1 or (info.num_ack_pending or 0) <= len(self._held):
                return True
            try:
                stored = await self._js.get_msg(
                    self._domain_stream, seq=acked + 1, subject=DOMAIN_SUBJECTS[0], next=True
                )
            except NotFoundError:
                return True
            return stored.seq is not None and stored.seq >= first
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("fan-out consumer info failed: %s", exc)
            await asyncio.sleep(0.5)
            return False

    async def _keep_held(self) -> None:
        """Tell JetStream the held events are being worked on, so that a long wait or a slow delivery does
        not make it hand them to another process (which would write them out of order). Only while the
        loop moves: held by a loop that hangs, they go to another process after the ack wait."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(ACK_WAIT / 3)
            if loop.time() - self._progress_at > ACK_WAIT / 2:
                continue
            for msg in list(self._held.values()):
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _deliver_until_done(self, batch: list[Msg]) -> None:
        """Retry this run until it is delivered, before writing anything newer: moving on would put later
        events ahead of these in every user's log. Msg ids make a repeated append a no-op."""
        delay = 0.5
        loop = asyncio.get_running_loop()
        while True:
            self._progress_at = loop.time()
            try:
                await self._deliver(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # nats-py turns a cancellation inside publish_async into its own error
                log.warning("fan-out of %d events failed, retrying in %.1fs: %s", len(batch), delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _follow(self, stream_seq: int) -> None:
        """Clear the membership cache unless this event directly follows the last one this process saw:
        in a gap, another replica may have handled a membership change."""
        if self._last_seq is not None and stream_seq != self._last_seq + 1:
            self._cache.clear()
        self._last_seq = stream_seq

    async def _deliver(self, batch: list[Msg]) -> None:
        futures: list[asyncio.Future[Any]] = []
        try:
            await self._append(batch, futures)
        finally:
            # Appends whose acks never came (the connection broke) would hold their slots for ever.
            for future in futures:
                future.cancel()
        for msg in batch:
            await msg.ack()

    async def _append(self, batch: list[Msg], futures: list[asyncio.Future[Any]]) -> None:
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
                        user_log_subject(user_id),
                        entry,
                        headers={"Nats-Msg-Id": f"{event.id}:{user_id}"},
                        # Appends in flight are capped per connection; when acks stop coming (NATS went
                        # away) waiting for room must end too.
                        wait_stall=PUBLISH_WAIT,
                    )
                )
            fanned_out.labels(event.type).inc()
        if futures:
            await asyncio.wait_for(asyncio.gather(*futures), timeout=PUBLISH_WAIT)
            log_writes.inc(len(futures))


def _queued(sub: Any) -> list[Msg]:
    """Messages the server handed to this subscription after its last fetch returned (a pull request
    stays open until it expires); nats-py keeps them for the next fetch, which will not come."""
    subscription = getattr(sub, "_sub", None)
    queue = getattr(subscription, "_pending_queue", None)
    found: list[Msg] = []
    while queue is not None and not queue.empty():
        msg = queue.get_nowait()
        with contextlib.suppress(AttributeError):
            subscription._pending_size -= len(msg.data)  # nats-py's own count of what it holds
        if msg.reply and msg.reply.startswith("$JS.ACK."):  # not a status message of the pull protocol
            found.append(msg)
    return found
