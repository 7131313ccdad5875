"""Which notify process fans out: the one holding a lease, a key in a NATS key-value bucket whose entries
lapse ``LEASE_SECONDS`` after they are written. The holder renews it three times a lease; another process
takes it once it lapses (the holder died or hangs) or is given back (the holder stopped).

One writer at a time is what keeps fan-out fast with several processes: every user's log follows the order
of the domain stream (``notify_server.fanout``), so with two processes fetching, events handed out to them
alternately would each wait for the other's acks. The ordering rule still holds during a hand-over, when
two processes may briefly both fetch.
"""

from __future__ import annotations

import contextlib

from nats.js.api import StorageType
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

BUCKET = "notify_fanout"
KEY = "leader"
LEASE_SECONDS = 3.0


class Lease:
    def __init__(self, js: JetStreamContext, holder: str) -> None:
        self._js = js
        self._holder = holder.encode()
        self._kv: KeyValue | None = None
        self._revision: int | None = None

    async def start(self) -> None:
        try:
            self._kv = await self._js.key_value(BUCKET)
        except BucketNotFoundError:
            self._kv = await self._js.create_key_value(
                bucket=BUCKET, ttl=LEASE_SECONDS, history=1, storage=StorageType.FILE
            )

    async def renew(self) -> bool:
        """Keep the lease when this process holds it, take it when it is free; whether it is held now."""
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
            return False  # another process holds it

    async def release(self) -> None:
        """Give the lease back at once, so that another process need not wait for it to lapse."""
        if self._kv is not None and self._revision is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(KEY, last=self._revision)
        self._revision = None
