"""``GET /sse`` (alias ``/events``): a user's events as Server-Sent Events, resumable by id.

Resume: the client sends the last id it saw (``Last-Event-ID`` header or ``?last_event_id=``). If that
entry is still in the user's log, every later entry is replayed from JetStream, then live delivery
continues with duplicates dropped by id. If it has expired, the stream starts with ``resync_required``.

The handler speaks ASGI itself rather than through a streaming response: a client that stops reading
leaves the writer blocked in ``send``, and only a writer that can be cancelled lets a full buffer end the
connection (the client then resumes from its last id, so nothing is skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, asgi
from litestar.types import Receive, Scope, Send
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Histogram

from fechatter_core.errors import ApiError, unauthorized, validation_error
from fechatter_core.events import user_log_subject
from fechatter_core.security import AccessClaims, TokenError, bearer_token, verify_access_token
from notify_server import frames
from notify_server.connections import Connection
from notify_server.context import NotifyContext
from notify_server.frames import Outgoing

log = logging.getLogger(__name__)

delivered = Counter("notify_events_delivered_total", "Events written to SSE connections", ["event"])
resumes = Counter("notify_resumes_total", "Connections that resumed from a Last-Event-ID")
resyncs = Counter("notify_resyncs_total", "resync_required events sent")
delivery_latency = Histogram(
    "notify_delivery_latency_seconds",
    "Event created -> written to the SSE connection",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_encode = msgspec.json.Encoder().encode

REPLAY_BATCH = 256

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def _authenticate(request: Request[Any, Any, Any], ctx: NotifyContext) -> AccessClaims:
    token = bearer_token(request.headers.get("authorization")) or request.query_params.get("access_token")
    if not token:
        raise unauthorized("Missing access token (Authorization header or ?access_token=)")
    try:
        return verify_access_token(ctx.settings.auth, token)
    except TokenError as exc:
        raise unauthorized(f"Invalid access token: {exc}") from None


def _last_event_id(request: Request[Any, Any, Any]) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise validation_error("Last-Event-ID must be an id this server sent", "last_event_id")
    return int(raw)


async def _still_retained(ctx: NotifyContext, user_id: int, last_id: int) -> bool:
    """Entries leave a user's log oldest first, so if ``last_id`` is still there nothing after it is lost."""
    if last_id == 0:
        return True
    try:
        msg = await ctx.js.get_msg(ctx.settings.nats.user_stream, seq=last_id)
    except NotFoundError:
        return False
    return msg.subject == user_log_subject(user_id)


async def _replay(ctx: NotifyContext, user_id: int, after: int) -> AsyncIterator[list[Outgoing]]:
    subject = user_log_subject(user_id)
    try:
        last = await ctx.js.get_last_msg(ctx.settings.nats.user_stream, subject)
    except NotFoundError:
        return
    if last.seq is None or last.seq <= after:
        return
    # A pull consumer: the replay goes at the pace of the client's socket, never faster than it reads, so
    # a long backlog cannot overrun a client-side buffer (a push consumer would drop and stall).
    sub = await ctx.js.pull_subscribe(
        subject,
        durable=None,
        stream=ctx.settings.nats.user_stream,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after + 1,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
        ),
    )
    try:
        while True:
            batch = [
                frames.log_entry(msg.metadata.sequence.stream, msg.data)
                for msg in await sub.fetch(REPLAY_BATCH, timeout=5)
            ]
            batch = [item for item in batch if item.seq is not None and item.seq <= last.seq]
            yield batch
            if not batch or batch[-1].seq == last.seq:
                return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


class _Chunk(msgspec.Struct):
    """What one ``send`` writes: every frame that was waiting, so a busy stream costs one write per wake-up
    rather than one per event."""

    body: bytes
    items: list[Outgoing] = msgspec.field(default_factory=list)


def _comment(text: bytes) -> _Chunk:
    return _Chunk(text)


def _single(event: str, data: bytes) -> _Chunk:
    item = Outgoing(frames.sse_frame(None, event, data), event=event)
    return _Chunk(item.body, [item])


class _Cursor:
    """The last log sequence written to this stream: a live entry at or below it was already sent (by the
    replay, or it arrived twice), and an entry of another workspace is passed over but still counts as
    seen."""

    def __init__(self, sent: int, workspace_id: int) -> None:
        self.sent = sent
        self.workspace_id = workspace_id

    def chunk(self, items: list[Outgoing]) -> _Chunk | None:
        kept = []
        for item in items:
            if item.seq is not None:
                if item.seq <= self.sent:
                    continue
                self.sent = item.seq
                if item.workspace_id not in (None, self.workspace_id):
                    continue
            kept.append(item)
        if not kept:
            return None
        return _Chunk(b"".join(item.body for item in kept), kept)


def _waiting(queue: asyncio.Queue[Outgoing], first: Outgoing) -> list[Outgoing]:
    items = [first]
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def _frames(
    ctx: NotifyContext, claims: AccessClaims, connection: Connection, last_id: int | None
) -> AsyncIterator[_Chunk]:
    settings = ctx.settings.sse
    cursor = _Cursor(last_id or 0, claims.workspace_id)
    yield _comment(f"retry: {settings.retry_ms}\n\n".encode())
    if last_id is not None:
        if await _still_retained(ctx, claims.user_id, last_id):
            resumes.inc()
            async for batch in _replay(ctx, claims.user_id, last_id):
                if chunk := cursor.chunk(batch):
                    yield chunk
        else:
            resyncs.inc()
            yield _single("resync_required", b'{"reason":"history_expired"}')
    else:
        yield _single("connected", _encode({"user_id": claims.user_id}))
    while not connection.closed.is_set():
        remaining = claims.expires_at - time.time()
        if remaining <= 0:
            yield _single("token_expired", b'{"reason":"access token expired; reconnect with a new one"}')
            return
        try:
            # asyncio.timeout, not wait_for: wait_for wraps every get in a new task.
            async with asyncio.timeout(min(settings.ping_interval_seconds, remaining)):
                first = await connection.queue.get()
        except TimeoutError:
            yield _comment(b": ping\n\n")
            continue
        if chunk := cursor.chunk(_waiting(connection.queue, first)):
            yield chunk


async def _write(send: Send, chunks: AsyncIterator[_Chunk]) -> None:
    async for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk.body, "more_body": True})
        now = time.time()
        for item in chunk.items:
            if item.event is not None:
                delivered.labels(item.event).inc()
            if item.created is not None:
                delivery_latency.observe(max(0.0, now - item.created))
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


@asgi(["/sse", "/events"], copy_scope=False)
async def sse(scope: Scope, receive: Receive, send: Send) -> None:
    """Server-Sent Events of the signed-in user, resumable by Last-Event-ID."""
    request: Request[Any, Any, Any] = Request(scope, receive)
    if request.method not in ("GET", "HEAD"):
        raise ApiError(
            405, "method_not_allowed", "Use GET to open the event stream", headers={"Allow": "GET"}
        )
    ctx: NotifyContext = request.app.state.ctx
    claims = _authenticate(request, ctx)
    last_id = _last_event_id(request)
    connection = await ctx.registry.open(claims.user_id, claims.workspace_id)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        writer = asyncio.create_task(_write(send, _frames(ctx, claims, connection, last_id)))
        waiters = [
            writer,
            asyncio.create_task(_disconnected(receive)),
            asyncio.create_task(connection.closed.wait()),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                task.cancel()
            for task in waiters:
                with contextlib.suppress(BaseException):
                    await task
        if writer.done() and not writer.cancelled() and (exc := writer.exception()) is not None:
            # The headers are gone already; end the stream and let the client resume from its last id.
            log.warning("SSE stream of user %s failed: %r", claims.user_id, exc)
    finally:
        await ctx.registry.close(connection)
