"""Which notify process fans out: the one holding a lease, a key in a NATS key-value bucket whose entries
lapse ``LEASE_SECONDS`` after they are written. The holder renews it three times a lease; another process
takes it once it lapses (the holder died or hangs) or is given back (the holder stopped).

One writer at a time is what keeps fan-out fast with several processes: every user's log follows the order
of the domain stream (``notify_server.fanout``), so with two processes fetching, events handed out to them
alternately would each wait for the other's acks. The ordering rule still holds during a hand-over, when
two processes may briefly both fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from nats.js.api import StorageType
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

BUCKET = "notify_fanout"
STREAM = f"KV_{BUCKET}"
KEY = "leader"
LEASE_SECONDS = 3.0


class Lease:
    def __init__(self, js: JetStreamContext, holder: str) -> None:
        self._js = js
        # Unique per start: a process that lost track of its own key (a timeout) recognises it by this.
        self._holder = f"{holder}:{uuid.uuid4().hex}".encode()
        self._kv: KeyValue | None = None
        self._revision: int | None = None
        self.valid_until = 0.0  # event-loop time until which the lease is certainly this process's

    async def start(self) -> None:
        try:
            self._kv = await self._js.key_value(BUCKET)
        except BucketNotFoundError:
            self._kv = await self._js.create_key_value(
                bucket=BUCKET, ttl=LEASE_SECONDS, history=1, storage=StorageType.FILE
            )
            return
        # A bucket made otherwise (by hand, or with another lease length) would let a lease never lapse.
        info = await self._js.stream_info(STREAM)
        if info.config.max_age != LEASE_SECONDS or info.config.max_msgs_per_subject != 1:
            info.config.max_age = LEASE_SECONDS
            info.config.duplicate_window = LEASE_SECONDS  # may not exceed max_age
            info.config.max_msgs_per_subject = 1
            await self._js.update_stream(info.config)

    async def renew(self) -> bool:
        """Keep the lease when this process holds it, take it when it is free; whether it is held now.
        A renewal slower than the interval between renewals counts as failed."""
        sent = asyncio.get_running_loop().time()
        try:
            held = await asyncio.wait_for(self._renew_or_restart(), timeout=LEASE_SECONDS / 3)
        except Exception:
            self.valid_until = 0.0
            raise
        self.valid_until = sent + LEASE_SECONDS if held else 0.0
        return held

    def held(self) -> bool:
        return asyncio.get_running_loop().time() < self.valid_until

    async def _renew_or_restart(self) -> bool:
        try:
            return await self._renew()
        except Exception:
            # The bucket may be gone (a NATS that lost its storage, an operator): make it again, once.
            self._revision = None
            await self.start()
            return await self._renew()

    async def _renew(self) -> bool:
        assert self._kv is not None
        if self._revision is not None:
            try:
                self._revision = await self._kv.update(KEY, self._holder, last=self._revision)
                return True
            except KeyWrongLastSequenceError:
                self._revision = None  # it lapsed (and may have been taken meanwhile)
        try:
            self._revision = await self._kv.create(KEY, self._holder)
            return True
        except KeyWrongLastSequenceError:
            pass
        # Someone holds it: perhaps this process, whose last renewal failed after it was written.
        with contextlib.suppress(KeyNotFoundError):
            entry = await self._kv.get(KEY)
            if entry.value == self._holder and entry.revision is not None:
                self._revision = await self._kv.update(KEY, self._holder, last=entry.revision)
                return True
        return False

    async def release(self) -> None:
        """Give the lease back at once, so that another process need not wait for it to lapse."""
        self.valid_until = 0.0
        if self._kv is not None and self._revision is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._kv.delete(KEY, last=self._revision), timeout=2)
        self._revision = None
