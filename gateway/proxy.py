"""Streaming reverse proxy (raw ASGI, for speed): a request body up to BUFFERED_BODY is read whole before it
goes on, a larger one is written to the service as it arrives (its size limit counted as it streams), and
the response is relayed chunk by chunk as it arrives, so file downloads are never held whole and
Server-Sent Events flow through unbuffered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

from litestar.types import Message, Receive, Scope, Send

from fechatter_core.web import send_error
from gateway.routing import Route, RoutingTable
from gateway.upstream import (
    ConnectFailed,
    Connection,
    Pool,
    PoolExhausted,
    UpstreamClosed,
    UpstreamError,
    UpstreamTimeout,
)

log = logging.getLogger(__name__)

HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"host",
    b"content-length",
    b"expect",
}
# Set by the gateway itself: a client-supplied value must never reach a service (it would let a client
# pick the address that rate limits count).
REQUEST_DROP = HOP_BY_HOP | {
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-real-ip",
    b"x-request-id",
}
# The gateway's own request-id layer sets these on the way out.
# Content-Length is kept: the body is relayed byte for byte (never decoded), and a sized response spares
# the client chunked decoding.
RESPONSE_DROP = (HOP_BY_HOP - {b"content-length"}) | {b"x-request-id", b"server", b"date"}


# A body refused early is still read (and dropped) up to this much past the limit: a connection closed on
# unread bytes is reset, and the client would see the reset instead of the 413/429.
DRAIN_EXTRA = 1024 * 1024


async def drain(receive: Receive, budget: int) -> None:
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body"):
            return


class BodyTooLarge(Exception):
    """The request body grew past its limit while streaming to the service."""


class ClientGone(Exception):
    """The client disconnected."""


class UpstreamFailed(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


# A busy instance (every pooled connection in use past the wait): the client may try again shortly.
BUSY_RETRY_AFTER = b"1"


class ClientBody:
    """The client's ``receive`` for a body that streams, noting whether it has been read to its end: a
    request answered with an error before that has the rest read and dropped first, or the client, still
    sending, would see its connection reset instead of the answer."""

    __slots__ = ("finished", "receive")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.finished = False

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.finished = True
        return message


# Sent again to the next replica after the request reached a server that failed before answering:
# only requests that are safe to repeat, and only when the whole body is still in hand. (A refused
# connection means nothing was sent; that request goes to the next replica whatever its method.)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


# The one route that honours Idempotency-Key (the chat API answers a repeated key with the original message
# instead of sending it twice). Elsewhere the header promises nothing: a refresh or a chat creation sent
# twice would act twice, so a key there does not make the request repeatable.
_REPEATABLE_WITH_KEY = re.compile(r"/api/chat/[0-9]+/messages")


def _retryable(method: str, path: str, idempotency_key: bool) -> bool:
    if method in SAFE_METHODS:
        return True
    return idempotency_key and method == "POST" and _REPEATABLE_WITH_KEY.fullmatch(path) is not None


# A body up to this size is read whole before an upstream connection is taken. The server hands over even
# a small body as a chunk followed by an empty last one; read that way, it is in hand and can be sent again,
# so the request goes on a pooled keep-alive connection instead of one of its own (a new TCP connection per
# send), and a client slow to send it holds no upstream connection meanwhile.
BUFFERED_BODY = 64 * 1024


async def _gather_body(receive: Receive, first: bytes) -> tuple[bytes, bool] | None:
    """The body read on from ``first`` to its end, or to past BUFFERED_BODY (then the rest streams): the
    bytes and whether more follow; None when the client went away."""
    parts, size = [first], len(first)
    while size <= BUFFERED_BODY:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(parts), False
    return b"".join(parts), True


def _too_large(limit: int) -> UpstreamFailed:
    return UpstreamFailed(413, "payload_too_large", f"The request body is larger than {limit} bytes")


class Proxy:
    def __init__(
        self,
        table: RoutingTable,
        pool: Pool,
        *,
        timeout: float,
    ) -> None:
        self.table = table
        self.pool = pool
        # For the response head, and between body chunks except on stream routes.
        self.timeout = timeout

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        body_limit: int,
    ) -> None:
        method: str = scope["method"]
        declared: bytes | None = None
        chunked_in = idempotency_key = False
        host = b""
        lines: list[bytes] = []
        for key, value in scope["headers"]:
            if key in REQUEST_DROP:
                if key == b"content-length":
                    declared = value
                elif key == b"transfer-encoding":
                    chunked_in = True
                elif key == b"host":
                    host = value
                continue
            if key == b"idempotency-key":
                idempotency_key = True
            lines.append(b"%s: %s\r\n" % (key, value))
        if chunked_in or (declared is not None and not declared.isdigit()):
            # A chunked body's length is counted as it streams (a Content-Length beside it means nothing).
            declared = None
            chunked_in = True
        if declared is not None and int(declared) > body_limit:
            await drain(receive, body_limit + DRAIN_EXTRA)
            await self._error(send, _too_large(body_limit))
            return

        # The body, or its first part when it is large enough to stream.
        body, more = b"", False
        client_body: ClientBody | None = None
        if chunked_in or (declared is not None and declared != b"0") or scope.get("http_version") == "2":
            message = await receive()
            if message["type"] != "http.request":
                return
            body, more = message.get("body", b""), message.get("more_body", False)
            if more and (declared is None or int(declared) <= BUFFERED_BODY):
                gathered = await _gather_body(receive, body)
                if gathered is None:
                    return
                body, more = gathered
            if more:
                receive = client_body = ClientBody(receive)
            if len(body) > body_limit:
                if more:
                    await drain(receive, body_limit + DRAIN_EXTRA - len(body))
                await self._error(send, _too_large(body_limit))
                return
        chunked_out = more and declared is None
        if declared is not None:
            lines.append(b"content-length: %s\r\n" % declared)
        elif chunked_out:
            lines.append(b"transfer-encoding: chunked\r\n")
        elif body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"content-length: %d\r\n" % len(body))
        client = scope.get("client")
        lines.append(
            b"x-forwarded-for: %s\r\nx-forwarded-proto: %s\r\nx-request-id: %s\r\n"
            % (
                (client[0] if client else "").encode("latin-1"),
                scope.get("scheme", "http").encode("latin-1"),
                scope["state"]["request_id"].encode("latin-1"),
            )
        )
        if host:
            lines.append(b"x-forwarded-host: %s\r\n" % host)
        lines.append(b"\r\n")
        rest = b"".join(lines)
        target = scope["raw_path"]
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        start = b"%s %s HTTP/1.1\r\nhost: " % (method.encode("latin-1"), target)
        if chunked_out and body:
            body = b"%x\r\n%s\r\n" % (len(body), body)

        upstream = route.upstream
        # A body that streams cannot be sent again, so it never goes on an idle connection, which the service
        # may have closed a moment ago (its keep-alive timeout): a new connection either is refused (nothing
        # sent, the next instance is tried) or carries the whole body. An instance that fails while the
        # body streams answers the client 502. Like an SSE stream, it is a connection of its own outside the
        # per-instance cap, closed afterwards: a client may take minutes to send its body, and slow uploads
        # must not hold the slots that every other request waits for.
        replayable = not more
        retryable = replayable and _retryable(method, scope["path"], idempotency_key)
        failure = UpstreamFailed(503, "unavailable", f"{upstream.name} is unavailable")
        candidates = upstream.candidates()
        if not route.stream and len(candidates) > 1 and self.pool.is_full(candidates[0]):
            # An instance with every connection busy (a slow one, most likely) is passed over for one that
            # has a connection to spare; it is waited for only when all are busy.
            candidates.sort(key=self.pool.is_full)
        for server in candidates:
            head = b"%s%s\r\n%s" % (start, self.pool.server(server).host_header, rest)
            conn: Connection | None = None
            pump: asyncio.Task[None] | None = None
            try:
                conn = await self.pool.acquire(server, stream=route.stream or more)
                try:
                    pump = await self._begin(conn, head, body, method, more, receive, chunked_out, body_limit)
                except UpstreamClosed:
                    if not (conn.reused and not conn.received and retryable):
                        raise
                    # Most likely an idle connection the service had already closed (the pool skips those it
                    # saw close), but the service may also have acted and then died: once more on a new
                    # connection only when repeating is harmless (safe method, or an Idempotency-Key).
                    conn = await self.pool.acquire(server, fresh=True, stream=route.stream)
                    pump = await self._begin(conn, head, body, method, more, receive, chunked_out, body_limit)
            except ConnectFailed as exc:
                log.warning("%s at %s unreachable (%s); trying the next", upstream.name, server, exc)
                upstream.mark_down(server)
                continue
            except PoolExhausted as exc:
                log.warning("%s at %s is busy: %s", upstream.name, server, exc)
                failure = UpstreamFailed(
                    503,
                    "unavailable",
                    f"{upstream.name} is busy; retry shortly",
                    [(b"retry-after", BUSY_RETRY_AFTER)],
                )
                break
            except UpstreamTimeout:
                failure = UpstreamFailed(504, "gateway_timeout", f"{upstream.name} did not answer in time")
                break
            except BodyTooLarge:
                failure = _too_large(body_limit)
                break
            except ClientGone:
                _stop(pump, conn)
                return
            except UpstreamClosed as exc:
                log.warning("%s at %s failed before answering: %s", upstream.name, server, exc)
                _stop(pump, conn)
                failure = UpstreamFailed(502, "bad_gateway", f"{upstream.name} failed to answer")
                if retryable:
                    continue
                break
            upstream.mark_up(server)
            await self._relay(conn, receive, send, route, pump)
            if pump is not None and (not pump.done() or pump.cancelled() or pump.exception() is not None):
                # The service answered before it had the whole body: the connection cannot be reused.
                _stop(pump, conn)
            else:
                self.pool.release(server, conn)
            return
        _stop(pump, conn)
        if client_body is not None and not client_body.finished:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await drain(client_body, body_limit + DRAIN_EXTRA)
        await self._error(send, failure)

    async def _begin(
        self,
        conn: Connection,
        head: bytes,
        body: bytes,
        method: str,
        more: bool,
        receive: Receive,
        chunked: bool,
        limit: int,
    ) -> asyncio.Task[None] | None:
        """Send the request (the rest of a streamed body from a task) and wait for the response head."""
        conn.begin(head + body if body else head, head_only=method == "HEAD")
        if not more:
            await conn.response_head(self.timeout)
            return None
        pump = asyncio.ensure_future(self._pump(conn, receive, chunked, limit, len(body)))
        exchange = conn.exchange
        pump.add_done_callback(lambda task: _pumped(task, conn, exchange))
        try:
            # No time limit while the client is still sending; the service's time starts when it has it all.
            while not pump.done() and not conn.head_done and conn.error is None:
                await conn.head_or_poke()
            await conn.response_head(self.timeout)
        except BaseException:
            pump.cancel()  # the caller never sees this task: stop reading the client's body here
            raise
        return pump

    async def _pump(self, conn: Connection, receive: Receive, chunked: bool, limit: int, size: int) -> None:
        """The rest of a request body, written to the service as it arrives."""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > limit:
                if more:
                    await drain(receive, limit + DRAIN_EXTRA - size)
                raise BodyTooLarge
            if chunk:
                conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if not more:
                if chunked:
                    conn.write(b"0\r\n\r\n")
                return
            await conn.drain()

    async def _relay(
        self, conn: Connection, receive: Receive, send: Send, route: Route, pump: asyncio.Task[None] | None
    ) -> None:
        headers = [(k, v) for k, v in conn.headers if k not in RESPONSE_DROP]
        try:
            await send({"type": "http.response.start", "status": conn.status, "headers": headers})
            if conn.complete:
                # The whole response is here already (most JSON answers): one message.
                await send({"type": "http.response.body", "body": conn.take_body(), "more_body": False})
                return
            watcher = None
            if route.stream and pump is None:
                # A stream may be quiet for long: notice a client that left without waiting for a write.
                watcher = asyncio.ensure_future(_watch(receive, conn))
            timeout = None if route.stream else self.timeout
            try:
                chunk = conn.take_body()
                while chunk is not None:
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    chunk = await conn.next_chunk(timeout)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                if watcher is not None:
                    watcher.cancel()
        except (UpstreamError, ClientGone, BodyTooLarge, OSError, RuntimeError) as exc:
            log.info("stream ended early: %s", type(exc).__name__)
            conn.close()

    @staticmethod
    async def _error(send: Send, failure: UpstreamFailed) -> None:
        await send_error(send, failure.status, failure.code, failure.message, failure.headers)


def _pumped(task: asyncio.Task[None], conn: Connection, exchange: int) -> None:
    # Done callbacks run a turn later: by then the connection may serve another exchange.
    if task.cancelled() or conn.exchange != exchange:
        return
    error = task.exception()
    if error is not None:
        if not isinstance(error, BodyTooLarge | ClientGone):
            error = UpstreamClosed(f"the request body could not be sent ({type(error).__name__})")
        conn.fail(error)
    else:
        conn.poke()


async def _watch(receive: Receive, conn: Connection) -> None:
    message: Message = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()
    conn.fail(ClientGone())


def _stop(pump: asyncio.Task[None] | None, conn: Connection | None) -> None:
    if pump is not None and not pump.done():
        pump.cancel()
    if conn is not None:
        conn.close()
