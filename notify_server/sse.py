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
from datetime import datetime
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
from notify_server.connections import Connection
from notify_server.context import NotifyContext

log = logging.getLogger(__name__)

delivered = Counter("notify_events_delivered_total", "Events written to SSE connections", ["event"])
resumes = Counter("notify_resumes_total", "Connections that resumed from a Last-Event-ID")
resyncs = Counter("notify_resyncs_total", "resync_required events sent")
delivery_latency = Histogram(
    "notify_delivery_latency_seconds",
    "Event created -> written to the SSE connection",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_decode_entry = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode

REPLAY_BATCH = 256

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class _Frame(msgspec.Struct):
    body: bytes
    event: str | None = None  # counted as delivered when set
    created: float | None = None  # event creation time, for the latency histogram


def _frame(seq: int | None, event: str, data: bytes) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + data + b"\n\n"


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


async def _replay(ctx: NotifyContext, user_id: int, after: int) -> AsyncIterator[tuple[int, bytes]]:
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
            for msg in await sub.fetch(REPLAY_BATCH, timeout=5):
                seq = msg.metadata.sequence.stream
                yield seq, msg.data
                if seq >= last.seq:
                    return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def _entry_frame(seq: int, raw: bytes, workspace_id: int) -> _Frame | None:
    """The SSE frame of a user-log entry, or None when it belongs to another of the user's workspaces."""
    entry = _decode_entry(raw)
    if entry.get("workspace_id", workspace_id) != workspace_id:
        return None
    event = entry.get("event", "message")
    created = None
    occurred = entry.get("occurred_at")
    if isinstance(occurred, str):
        with contextlib.suppress(ValueError):
            created = datetime.fromisoformat(occurred.replace("Z", "+00:00")).timestamp()
    return _Frame(_frame(seq, event, _encode(entry.get("data", {}))), event, created)


async def _frames(
    ctx: NotifyContext, claims: AccessClaims, connection: Connection, last_id: int | None
) -> AsyncIterator[_Frame]:
    settings = ctx.settings.sse
    sent = last_id or 0
    yield _Frame(f"retry: {settings.retry_ms}\n\n".encode())
    if last_id is not None:
        if await _still_retained(ctx, claims.user_id, last_id):
            resumes.inc()
            async for seq, raw in _replay(ctx, claims.user_id, last_id):
                if seq > sent:
                    sent = seq
                    if frame := _entry_frame(seq, raw, claims.workspace_id):
                        yield frame
        else:
            resyncs.inc()
            yield _Frame(_frame(None, "resync_required", b'{"reason":"history_expired"}'), "resync_required")
    else:
        yield _Frame(_frame(None, "connected", _encode({"user_id": claims.user_id})), "connected")
    while not connection.closed.is_set():
        remaining = claims.expires_at - time.time()
        if remaining <= 0:
            yield _Frame(
                _frame(None, "token_expired", b'{"reason":"access token expired; reconnect with a new one"}'),
                "token_expired",
            )
            return
        try:
            seq, raw = await asyncio.wait_for(
                connection.queue.get(), timeout=min(settings.ping_interval_seconds, remaining)
            )
        except TimeoutError:
            yield _Frame(b": ping\n\n")
            continue
        if seq is None:
            yield _Frame(raw, "ephemeral")
        elif seq > sent:
            sent = seq
            if frame := _entry_frame(seq, raw, claims.workspace_id):
                yield frame


async def _write(send: Send, frames: AsyncIterator[_Frame]) -> None:
    async for frame in frames:
        await send({"type": "http.response.body", "body": frame.body, "more_body": True})
        if frame.event is not None:
            delivered.labels(frame.event).inc()
        if frame.created is not None:
            delivery_latency.observe(max(0.0, time.time() - frame.created))
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
