"""Live delivery inside one notify process: one ordered JetStream consumer on every user's log, routed
to the SSE connections of that process by user id."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from nats.js.client import JetStreamContext
from prometheus_client import Counter, Gauge

from fechatter_core.events import USER_LOG_PREFIX

log = logging.getLogger(__name__)

open_connections = Gauge("notify_sse_connections", "Open SSE connections in this process")
slow_disconnects = Counter(
    "notify_sse_slow_client_disconnects_total", "Connections closed for falling behind"
)


@dataclass(eq=False)
class Connection:
    user_id: int
    queue: asyncio.Queue[tuple[int, bytes]]
    overflowed: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, seq: int, payload: bytes) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait((seq, payload))
        except asyncio.QueueFull:
            # Never skip silently: close, and the client resumes from its last id.
            self.overflowed = True
            slow_disconnects.inc()
            self.closed.set()


class Registry:
    def __init__(self, js: JetStreamContext, stream: str, buffer_size: int) -> None:
        self._js = js
        self._stream = stream
        self._buffer_size = buffer_size
        self._by_user: defaultdict[int, set[Connection]] = defaultdict(set)
        self._sub = None

    async def start(self) -> None:
        self._sub = await self._js.subscribe(
            f"{USER_LOG_PREFIX}.*",
            stream=self._stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            cb=self._on_message,
            idle_heartbeat=5.0,
        )

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _on_message(self, msg: Msg) -> None:
        try:
            user_id = int(msg.subject.rsplit(".", 1)[1])
        except ValueError:
            return
        connections = self._by_user.get(user_id)
        if not connections:
            return
        seq = msg.metadata.sequence.stream
        for connection in list(connections):
            connection.offer(seq, msg.data)

    def open(self, user_id: int) -> Connection:
        connection = Connection(user_id, asyncio.Queue(maxsize=self._buffer_size))
        self._by_user[user_id].add(connection)
        open_connections.inc()
        return connection

    def close(self, connection: Connection) -> None:
        users = self._by_user.get(connection.user_id)
        if users is not None:
            users.discard(connection)
            if not users:
                del self._by_user[connection.user_id]
        open_connections.dec()

    def count(self) -> int:
        return sum(len(c) for c in self._by_user.values())
