"""Live delivery inside one notify process: one ordered JetStream consumer on every user's log plus one
core NATS subscription for ephemeral events (typing, presence), routed to this process's SSE connections.

The registry also keeps this process's share of presence: each connection is recorded in Redis on open,
refreshed every heartbeat and dropped on close (``fechatter_core.live``), and a sweep claims lapsed typing
and the connections of processes that died, so each change is announced once whichever process sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections import defaultdict

import msgspec
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from nats.js.client import JetStreamContext
from prometheus_client import Counter, Gauge

from fechatter_core import live
from fechatter_core.events import USER_LOG_PREFIX
from fechatter_core.settings import SseSettings
from notify_server import frames
from notify_server.frames import Outgoing

log = logging.getLogger(__name__)
LIVE_CONSUMER_HEARTBEAT_SECONDS = 1.0
# How long a stopping process spends taking its streams out of presence (else they lapse with their TTL).
PRESENCE_CLEANUP_SECONDS = 1.5
# Streams refreshed per Redis round trip by the presence heartbeat.
HEARTBEAT_BATCH = 500

open_connections = Gauge("notify_sse_connections", "Open SSE connections in this process")
slow_disconnects = Counter(
    "notify_sse_slow_client_disconnects_total", "Connections closed for falling behind"
)
ephemeral_events = Counter("notify_ephemeral_events_total", "Typing and presence events received", ["event"])


class Connection:
    """One open SSE stream: the events waiting to be written and what wakes its writer.

    An idle stream is held for hours and one process holds tens of thousands, so this is all the state a
    stream has besides its handler's coroutine: no queue, event or task of its own. Whatever concerns the
    writer (an event offered, the stream ended, a blocked write or the client's disconnect finishing, a
    timer) resolves the one future it is waiting on, created only while it waits.
    """

    __slots__ = (
        "_limit",
        "_waiter",
        "due",
        "ended",
        "id",
        "pending",
        "user_id",
        "workspace_id",
        "write_timeout",
    )

    def __init__(self, user_id: int, workspace_id: int, limit: int, write_timeout: float) -> None:
        self.user_id = user_id
        self.workspace_id = workspace_id
        self.id = uuid.uuid4().hex
        self.pending: list[Outgoing] = []
        # Why the stream is over ("slow", "disconnected", "closed": the process is stopping), or None while
        # it is open.
        self.ended: str | None = None
        # When the writer must look again by itself (a ping, the token's expiry), on the loop's clock:
        # the registry's ticker wakes it then, so a wait costs no timer of its own.
        self.due = math.inf
        self._limit = limit
        self.write_timeout = write_timeout
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, item: Outgoing) -> None:
        if self.ended is not None:
            return
        if len(self.pending) >= self._limit:
            # Never skip silently: close, and the client resumes from its last id.
            self.cut_off(f"{len(self.pending)} events buffered")
            return
        self.pending.append(item)
        self.wake()

    def cut_off(self, why: str) -> None:
        """End a stream whose client has fallen behind."""
        slow_disconnects.inc()
        log.warning("closing a slow SSE connection of user %s: %s", self.user_id, why)
        self.end("slow")

    def take(self) -> list[Outgoing]:
        items, self.pending = self.pending, []
        return items

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
        self.wake()

    def wake(self, *_: object) -> None:
        """Resolve the writer's wait; also a done-callback of the futures it watches."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def sleep(self, until: float = math.inf) -> None:
        """Wait until woken, or about ``until`` (loop time, to within a tick of the registry's ticker);
        the caller then looks at what changed."""
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self.due = until
        try:
            await waiter
        finally:
            self._waiter = None
            self.due = math.inf


class Registry:
    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        redis: aioredis.Redis,
        stream: str,
        settings: SseSettings,
    ) -> None:
        self._nc = nc
        self._js = js
        self._redis = redis
        self._stream = stream
        self._settings = settings
        self._by_user: defaultdict[int, set[Connection]] = defaultdict(set)
        self._by_workspace: defaultdict[int, set[Connection]] = defaultdict(set)
        self._sub = None
        self._live_sub = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._sub = await self._js.subscribe(
            f"{USER_LOG_PREFIX}.*",
            stream=self._stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            cb=self._on_message,
            # The ordered consumer is ephemeral: a restarted nats-server no longer has it, and the client
            # notices only when two heartbeats in a row are missing, then recreates it from the next
            # sequence (nothing is lost). At 5 s live delivery stalled for 10-20 s after a NATS restart;
            # at 1 s it resumes within 2-4 s, for one small heartbeat a second per notify process.
            idle_heartbeat=LIVE_CONSUMER_HEARTBEAT_SECONDS,
        )
        self._live_sub = await self._nc.subscribe(f"{live.LIVE_PREFIX}.*", cb=self._on_live)
        self._tasks = [
            asyncio.create_task(self._tick(), name="stream-ticker"),
            asyncio.create_task(self._heartbeat(), name="presence-heartbeat"),
            asyncio.create_task(self._sweep(), name="realtime-sweep"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in (self._sub, self._live_sub):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        # Connections still open end with the process: their streams end now (no ticker wakes them any
        # more), and they leave presence now rather than at the ttl. All at once and within one deadline:
        # with Redis away, shutdown waits a second, not one per stream.
        open_now = [c for conns in self._by_user.values() for c in conns]
        for connection in open_now:
            connection.end("closed")
        if open_now:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.gather(*(self._touch(c, 0) for c in open_now), return_exceptions=True),
                    timeout=PRESENCE_CLEANUP_SECONDS,
                )

    async def _on_message(self, msg: Msg) -> None:
        try:
            user_id = int(msg.subject.rsplit(".", 1)[1])
        except ValueError:
            return
        connections = self._by_user.get(user_id)
        if not connections:
            return
        try:
            # Decoded once for all of the user's connections.
            item = frames.log_entry(msg.metadata.sequence.stream, msg.data)
        except msgspec.DecodeError:
            log.error("dropping undecodable user-log entry on %s", msg.subject)
            return
        for connection in list(connections):
            connection.offer(item)

    async def _on_live(self, msg: Msg) -> None:
        try:
            event = live.decode_live(msg.data)
        except msgspec.DecodeError:
            log.error("dropping undecodable live event on %s", msg.subject)
            return
        ephemeral_events.labels(event.event).inc()
        item = frames.ephemeral(event.event, event.data)
        if event.recipients is None:
            targets = list(self._by_workspace.get(event.workspace_id, ()))
        else:
            targets = [
                connection
                for user_id in event.recipients
                for connection in self._by_user.get(user_id, ())
                if connection.workspace_id == event.workspace_id
            ]
        for connection in targets:
            connection.offer(item)

    # -- connections and presence --------------------------------------------------------------------

    async def open(self, user_id: int, workspace_id: int) -> Connection:
        connection = Connection(
            user_id, workspace_id, self._settings.buffer_size, self._settings.write_timeout_seconds
        )
        self._by_user[user_id].add(connection)
        self._by_workspace[workspace_id].add(connection)
        open_connections.inc()
        await self._touch(connection, self._ttl_ms)
        return connection

    async def close(self, connection: Connection) -> None:
        for index, key in (
            (self._by_user, connection.user_id),
            (self._by_workspace, connection.workspace_id),
        ):
            members = index.get(key)
            if members is not None:
                members.discard(connection)
                if not members:
                    del index[key]
        open_connections.dec()
        await self._touch(connection, 0)

    def count(self) -> int:
        return sum(len(c) for c in self._by_user.values())

    @property
    def _ttl_ms(self) -> int:
        return int(self._settings.presence_ttl_seconds * 1000)

    async def _touch(self, connection: Connection, ttl_ms: int) -> None:
        try:
            await live.presence_touch(
                self._redis,
                self._nc,
                workspace_id=connection.workspace_id,
                user_id=connection.user_id,
                connection_id=connection.id,
                ttl_ms=ttl_ms,
            )
        except Exception as exc:
            # Presence is best effort: a stream is never refused because Redis is away.
            log.warning("presence of user %s not updated: %s", connection.user_id, exc)

    async def _tick(self) -> None:
        """Wake the streams whose time has come (a ping, an expired token): one pass over the open
        streams a tick instead of a timer set and cancelled at every wait of every stream."""
        period = min(1.0, self._settings.ping_interval_seconds / 10)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for connections in self._by_user.values():
                for connection in connections:
                    if connection.due <= now:
                        connection.wake()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._settings.presence_heartbeat_seconds)
            open_now = [c for conns in self._by_user.values() for c in conns]
            for start in range(0, len(open_now), HEARTBEAT_BATCH):
                # Streams that ended while earlier batches were refreshed are left out: a refresh would put
                # them back into presence for a whole ttl.
                batch = [
                    live.LiveConnection(c.workspace_id, c.user_id, c.id)
                    for c in open_now[start : start + HEARTBEAT_BATCH]
                    if c.ended is None and c in self._by_user.get(c.user_id, ())
                ]
                try:
                    failed = await live.presence_refresh(self._redis, self._nc, batch, ttl_ms=self._ttl_ms)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Best effort like every presence write: a missed refresh lapses only at the ttl.
                    log.warning("presence heartbeat of %d streams failed: %s", len(batch), exc)
                    continue
                if failed:
                    log.warning("presence heartbeat: %d of %d streams not refreshed", failed, len(batch))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._settings.sweep_interval_seconds)
            try:
                await live.typing_sweep(self._redis, self._nc)
                await live.presence_sweep(self._redis, self._nc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("typing/presence sweep failed: %s", exc)
