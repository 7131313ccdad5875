"""A Redis connection for calls made on every request: one per worker, commands pipelined (so that
concurrent requests never wait for a free connection; those of one event-loop turn go out in one write),
replies parsed by hiredis and matched to their commands in order, scripts run by their SHA-1.

For the gateway's rate limiter (one script call per request) and the end of the sender's typing on every
message send. redis-py's asyncio client spent about a quarter of the gateway's Python time per request on
that call (pool checkout, its retry wrapper, a timeout per read), and 120-180 µs of CPU per typing stop
against 39 µs here (measured, 16 calls at a time), while writing a command and reading its reply on a
connection already open costs little. Everything else keeps redis-py (``fechatter_core.redis_client``).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis


class RedisFailure(Exception):
    """No connection, no reply in time, or an error reply."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.pending: deque[asyncio.Future[Any]] = deque()
        self.closed = False
        self.number = 0  # which of the client's connections it is (RedisClient.connection_number)
        # Commands of one turn of the event loop, written together at its end: under load many requests
        # call in the same turn, and one write (one system call) for all of them costs less than one each.
        self._outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
            while (reply := self.reader.gets()) is not False:
                if not self.pending:
                    raise hiredis.ProtocolError("a reply to no command")
                waiter = self.pending.popleft()
                if not waiter.done():  # else its caller gave up (timeout, cancelled): the reply is dropped
                    waiter.set_result(reply)
        except hiredis.ProtocolError as exc:
            self.close(RedisFailure(f"Redis protocol error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(RedisFailure(f"Redis connection lost ({exc})" if exc else "Redis closed the connection"))

    def send(self, command: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        if self.closed:
            # Closed after the caller got it (a failure a moment ago): fail now, not after the timeout.
            waiter.set_exception(RedisFailure("Redis connection lost"))
            return waiter
        self.pending.append(waiter)
        if not self._outgoing:
            loop.call_soon(self._write)
        self._outgoing.append(command)
        return waiter

    def _write(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self.transport is not None and not self.closed:
            self.transport.write(b"".join(outgoing))

    def close(self, error: RedisFailure) -> None:
        self.closed = True
        while self.pending:
            waiter = self.pending.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class RedisClient:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS) or ``unix:///path?db=N``; a
    ``password`` given apart wins over one in the URL. Every wait is bounded by ``timeout`` seconds."""

    def __init__(self, url: str, password: str | None = None, timeout: float = 0.5) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            # The scheme only: the URL may hold the password.
            raise ValueError(f"redis.url: expected redis://, rediss:// or unix://, not {parts.scheme}://")
        self.timeout = timeout
        self._unix = parts.path if parts.scheme == "unix" else None
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        self._username = unquote(parts.username) if parts.username else None
        self._password = password or (unquote(parts.password) if parts.password else None)
        db = parse_qs(parts.query).get("db", [""])[0] if self._unix else parts.path.lstrip("/")
        self._db = int(db) if db else 0
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._scripts: dict[str, str] = {}
        self._connections_made = 0

    @property
    def connection_number(self) -> int | None:
        """Which connection is in use (they are numbered from 1), None while there is none. What a caller
        learned from Redis over one connection may not hold on the next: Redis may have restarted."""
        conn = self._conn
        return conn.number if conn is not None and not conn.closed else None

    async def execute(self, *args: str | bytes | int) -> Any:
        """One command's reply (bytes, int, list …). Raises ``RedisFailure``."""
        conn = await self._connection()
        return await self._call(conn, args)

    async def ping(self) -> None:
        await self.execute("PING")

    async def script(self, source: str, keys: list[str], args: list[str | int]) -> Any:
        """Run a Lua script by its SHA-1, loading it (EVAL) when this Redis does not know it yet."""
        sha = self._scripts.get(source)
        if sha is None:
            sha = self._scripts[source] = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except RedisFailure as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.execute("EVAL", source, len(keys), *keys, *args)

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn.close(RedisFailure("the client was closed"))
            self._conn = None

    async def _call(self, conn: _Connection, args: tuple[str | bytes | int, ...]) -> Any:
        waiter = conn.send(hiredis.pack_command(args))
        timer = asyncio.get_running_loop().call_later(self.timeout, _expire, waiter)
        try:
            reply = await waiter
        except TimeoutError:
            # Redis is stuck or gone: start over on a new connection for the next command.
            conn.close(RedisFailure("no Redis reply in time"))
            raise RedisFailure(f"no Redis reply in {self.timeout} s") from None
        finally:
            timer.cancel()
        if isinstance(reply, hiredis.ReplyError):
            raise RedisFailure(str(reply))
        return reply

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._connecting is None:
            # Requests arriving while a connection is being made wait for that one.
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, attempt: asyncio.Future[_Connection]) -> None:
        self._connecting = None
        if not attempt.cancelled() and attempt.exception() is None:
            self._connections_made += 1
            self._conn = attempt.result()
            self._conn.number = self._connections_made

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                if self._unix is not None:
                    _, conn = await loop.create_unix_connection(_Connection, self._unix)
                else:
                    _, conn = await loop.create_connection(_Connection, self._host, self._port, ssl=self._ssl)
        except (OSError, TimeoutError) as exc:
            raise RedisFailure(f"no connection to Redis: {exc or type(exc).__name__}") from None
        try:
            if self._password:
                auth = (
                    ("AUTH", self._username, self._password) if self._username else ("AUTH", self._password)
                )
                await self._call(conn, auth)
            if self._db:
                await self._call(conn, ("SELECT", self._db))
        except RedisFailure as exc:
            conn.close(exc)
            raise
        return conn


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
