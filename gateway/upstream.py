"""HTTP/1.1 keep-alive connections from the gateway to the services.

The services are our own Granian servers: HTTP/1.1, responses framed by Content-Length or chunked. A
general-purpose client spent most of the gateway's time on pool bookkeeping and stream layers, so the
gateway keeps its own small pool: one ``asyncio.Protocol`` per connection, responses parsed by llhttp (the
C parser of ``httptools``), idle connections kept per server and reused last-in first-out.

Connections per instance are capped (``upstream_pool.max_connections``): a request beyond the cap waits
for one to come free, for a bounded time and in a bounded queue, and then gets ``PoolExhausted`` (the
proxy answers 503 with Retry-After). Stream routes (SSE) hold their connection for hours, so each stream
gets a connection of its own outside the cap (``acquire(stream=True)``), closed when the stream ends: a
few hundred open browser tabs must never leave the API calls without a connection. The number of streams
is not capped here: each one is also a client connection to the gateway, and each connect counts against
the client's rate limits.

Bodies stream both ways: a request body is written as it arrives (with the transport's flow control, so a
slow service holds the client back instead of filling memory), and a response body is handed on chunk by
chunk; reading from the service pauses while more than ``HIGH_WATER`` bytes wait for a slow client.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools

# Response bytes held for the client before reading from the service pauses (and resumes below LOW_WATER).
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class UpstreamError(Exception):
    """The exchange with a service failed."""


class ConnectFailed(UpstreamError):
    """No connection (refused, unreachable or timed out): nothing was sent."""


class UpstreamClosed(UpstreamError):
    """The connection broke (closed, reset, or a response that is not HTTP) before the response was
    complete."""


class UpstreamTimeout(UpstreamError):
    """No response head, or no next body chunk, in time."""


class PoolExhausted(UpstreamError):
    """Every connection the instance may have is busy and none came free in time: nothing was sent."""


class Server:
    """Where one upstream instance listens, from its URL (``http://host:port`` or ``https://…``)."""

    __slots__ = ("host", "host_header", "port", "ssl", "url")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream server {url!r} is not an http:// or https:// URL")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.host_header = parts.netloc.encode("latin-1")


class Connection(asyncio.Protocol):
    """One keep-alive connection: one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_closed: Callable[[], None] | None = None) -> None:
        self.loop = loop
        # Called once when the connection closes, whichever side closed it: gives its pool slot back.
        self._on_closed = on_closed
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        # llhttp cannot be told that a response has no body (the answer to HEAD), so the parser of such an
        # exchange is left behind mid-message and the next exchange starts a fresh one.
        self._parser_spent = False
        self.closed = False
        self.reused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        # Counts exchanges, so that a late callback of one never acts on the next.
        self.exchange = 0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.received = False
        self.error: BaseException | None = None
        self.head_only = False
        self._interim = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.complete:
            # Bytes after a complete response (a HEAD answer's body, or a server talking out of turn): the
            # connection cannot be trusted for another exchange.
            self.keep_alive = False
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(UpstreamClosed("the service switched protocols"))
        except httptools.HttpParserError as exc:
            self.fail(UpstreamClosed(f"malformed response: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._gone()
        if self.head_done and not self.complete and self._until_close():
            # No Content-Length and not chunked: the body ends with the connection.
            self.complete = True
            self._wake()
        elif not self.complete:
            self.fail(UpstreamClosed("the service closed the connection" + (f" ({exc})" if exc else "")))
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(UpstreamClosed("the service closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    # -- httptools callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.head_done:
            # A second response to one request: the connection is out of step, drop it.
            self.keep_alive = False
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:
            self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            # 100 Continue and other interim answers: the real response follows.
            self._interim = True
            self.headers = []
            return
        self.status = status
        self.head_done = True
        if self.head_only:
            # The answer to HEAD ends with its head, whatever its Content-Length or Transfer-Encoding say.
            # llhttp (through httptools) would wait for that body: the exchange is complete here, and the
            # next one gets a new parser. llhttp still knows whether the connection may be kept (HTTP/1.1
            # without "Connection: close", and a length or chunked framing).
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()
            self._parser_spent = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            if self.head_only:
                # Bytes after the head of a HEAD answer: the service is out of step.
                self.keep_alive = False
                self.close()
            return
        if not self.head_done:
            self.fail(UpstreamClosed("a body without a response head"))
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.complete:
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # -- the exchange ----------------------------------------------------------------------------------

    def _until_close(self) -> bool:
        return not any(k in (b"content-length", b"transfer-encoding") for k, _ in self.headers) and (
            self.status not in (204, 304)
        )

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def poke(self) -> None:
        """Wake whoever waits on this exchange (to look again at what changed elsewhere)."""
        self._wake()

    def fail(self, error: BaseException) -> None:
        """End the exchange with ``error`` (raised to whoever waits) and drop the connection."""
        if self.error is None and not self.complete:
            self.error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.close()

    def close(self) -> None:
        self.closed = True
        self._gone()
        if self.transport is not None:
            self.transport.abort()

    def _gone(self) -> None:
        callback, self._on_closed = self._on_closed, None
        if callback is not None:
            callback()

    @property
    def pooled(self) -> bool:
        """Holds a slot of its pool (streams and health probes do not)."""
        return self._on_closed is not None

    def detach(self) -> None:
        """Forget the pool slot (its owner passes it on) and close."""
        self._on_closed = None
        self.close()

    def begin(self, head: bytes, head_only: bool) -> None:
        self._reset()
        self.exchange += 1
        self.head_only = head_only
        if self._parser_spent:
            self.parser = httptools.HttpResponseParser(self)
            self._parser_spent = False
        assert self.transport is not None
        self.transport.write(head)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the service reads more slowly than the body arrives."""
        if self.closed:
            raise UpstreamClosed("the service closed the connection")
        if self._write_paused:
            if self._drain is None:
                self._drain = self.loop.create_future()
            await self._drain

    async def _wait(self, timeout: float | None) -> None:
        self._waiter = waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def response_head(self, timeout: float | None) -> None:
        """Wait for the status line and headers (``self.status``, ``self.headers``)."""
        deadline = None if timeout is None else self.loop.time() + timeout
        while not self.head_done and self.error is None:
            try:
                await self._wait(None if deadline is None else max(0.0, deadline - self.loop.time()))
            except TimeoutError:
                self.close()
                raise UpstreamTimeout("no response in time") from None
        if self.error is not None and not self.head_done:
            raise self.error
        if not 200 <= self.status <= 999:
            self.close()
            raise UpstreamClosed(f"invalid response status {self.status}")

    async def head_or_poke(self) -> None:
        """Wait until the response head arrives, the exchange fails, or ``poke`` is called."""
        if not self.head_done and self.error is None:
            await self._wait(None)

    def take_body(self) -> bytes:
        """Whatever body has arrived and not been taken yet."""
        if not self._chunks:
            return b""
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def next_chunk(self, timeout: float | None) -> bytes | None:
        """The next part of the body, or None at its end."""
        while not self._chunks:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            try:
                await self._wait(timeout)
            except TimeoutError:
                self.close()
                raise UpstreamTimeout("the response stalled") from None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._reading_paused and self._buffered < LOW_WATER and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and not self._chunks


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Instance:
    """The connections of one upstream instance: how many are open (idle or busy, streams apart), the idle
    ones, and the requests waiting for one (each a future resolved with an idle connection, or with None:
    a free slot to connect with)."""

    __slots__ = ("idle", "open", "server", "waiters")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.open = 0
        self.idle: list[Connection] = []
        self.waiters: deque[asyncio.Future[Connection | None]] = deque()


class Pool:
    """Keep-alive connections per instance, at most ``max_connections`` open at once (streams apart)."""

    def __init__(
        self,
        connect_timeout: float,
        *,
        max_connections: int = 128,
        wait_seconds: float = 5.0,
        max_waiting: int = 1024,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.wait_seconds = wait_seconds
        self.max_waiting = max_waiting
        self._instances: dict[str, _Instance] = {}

    def _instance(self, url: str) -> _Instance:
        found = self._instances.get(url)
        if found is None:
            found = self._instances[url] = _Instance(Server(url))
        return found

    def server(self, url: str) -> Server:
        return self._instance(url).server

    def open_connections(self, url: str) -> int:
        return self._instance(url).open

    def is_full(self, url: str) -> bool:
        """Whether a request for ``url`` would have to wait: every connection it may have is busy."""
        instance = self._instance(url)
        return instance.open >= self.max_connections and not instance.idle

    async def acquire(self, url: str, *, fresh: bool = False, stream: bool = False) -> Connection:
        """A connection to ``url``: an idle one (marked ``reused``) unless ``fresh``, else a new one within
        the cap, else the next one that comes free. ``stream``: a connection of its own, outside the cap
        (``release`` closes it). Raises ``ConnectFailed`` or ``PoolExhausted``."""
        if stream:
            return await self.connect(url)
        instance = self._instance(url)
        if not fresh:
            while instance.idle:
                conn = instance.idle.pop()
                if not conn.closed:
                    conn.reused = True
                    return conn
        elif instance.open >= self.max_connections:
            # A new connection is wanted while idle ones hold the slots: the oldest idle one gives up its.
            while instance.idle and instance.open >= self.max_connections:
                instance.idle.pop(0).close()
        if instance.open < self.max_connections:
            instance.open += 1
            return await self._connect_in_slot(url, instance)
        handed = await self._wait(instance)
        if handed is None:
            return await self._connect_in_slot(url, instance)
        if handed.closed:
            # The service closed it between being handed over and this request waking: closing gave its
            # slot back already, so start over rather than write into a dead socket.
            return await self.acquire(url, fresh=fresh)
        if fresh:
            handed.detach()  # its slot stays ours
            return await self._connect_in_slot(url, instance)
        handed.reused = True
        return handed

    async def _wait(self, instance: _Instance) -> Connection | None:
        if len(instance.waiters) >= self.max_waiting:
            raise PoolExhausted(f"{self.max_waiting} requests already wait for {instance.server.url}")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Connection | None] = loop.create_future()
        instance.waiters.append(waiter)
        timer = loop.call_later(self.wait_seconds, _expire, waiter)
        try:
            return await waiter
        except TimeoutError:
            raise PoolExhausted(
                f"all {self.max_connections} connections to {instance.server.url} stayed busy"
                f" for {self.wait_seconds} s"
            ) from None
        except asyncio.CancelledError:
            # Cancelled (the client left) just after a connection or a slot was handed over: give it back.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is None:
                    self._slot_freed(instance)
                else:
                    self._give(instance, handed)
            raise
        finally:
            timer.cancel()
            if waiter in instance.waiters:
                instance.waiters.remove(waiter)

    async def _connect_in_slot(self, url: str, instance: _Instance) -> Connection:
        """Connect with a slot already counted in ``instance.open``; the slot is freed when the connection
        closes, or at once when connecting fails."""
        freed = False

        def free() -> None:
            # Once, whether the connection closes or never came to be.
            nonlocal freed
            if not freed:
                freed = True
                self._slot_freed(instance)

        try:
            return await self.connect(url, on_closed=free)
        except BaseException:
            free()
            raise

    def _slot_freed(self, instance: _Instance) -> None:
        while instance.waiters:
            waiter = instance.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the first waiting request
                return
        instance.open -= 1

    def _give(self, instance: _Instance, conn: Connection) -> None:
        while instance.waiters:
            waiter = instance.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        instance.idle.append(conn)

    async def connect(self, url: str, on_closed: Callable[[], None] | None = None) -> Connection:
        """A new connection, outside the cap unless ``on_closed`` gives its slot back."""
        server = self.server(url)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop, on_closed),
                    server.host,
                    server.port,
                    ssl=server.ssl,
                    server_hostname=server.host if server.ssl else None,
                )
        except TimeoutError:
            raise ConnectFailed(f"no connection to {url} in {self.connect_timeout} s") from None
        except OSError as exc:
            raise ConnectFailed(f"no connection to {url}: {exc}") from None
        return conn

    def release(self, url: str, conn: Connection) -> None:
        """Back to the pool when it can serve another exchange (to a waiting request first); else closed.
        Connections outside the cap (streams) are closed."""
        if not conn.reusable or not conn.pooled:
            conn.close()
            return
        self._give(self._instance(url), conn)

    def close(self) -> None:
        for instance in self._instances.values():
            for conn in instance.idle:
                conn.close()
            instance.idle.clear()

    async def fetch(self, url: str, target: str, timeout: float) -> tuple[int, bytes]:
        """A small GET (health probes) on a connection of its own: status and whole body. Raises
        ``UpstreamError``, or ``TimeoutError`` when the whole exchange took longer than ``timeout``."""
        server = self.server(url)
        async with asyncio.timeout(timeout):
            conn = await self.connect(url)
            try:
                conn.begin(
                    b"GET %s HTTP/1.1\r\nhost: %s\r\nconnection: close\r\n\r\n"
                    % (target.encode("latin-1"), server.host_header),
                    head_only=False,
                )
                await conn.response_head(None)
                parts = [conn.take_body()]
                while (chunk := await conn.next_chunk(None)) is not None:
                    parts.append(chunk)
                return conn.status, b"".join(parts)
            finally:
                conn.close()
