"""``GET /sse`` (alias ``/events``): a user's events as Server-Sent Events, resumable by id.

Resume: the client sends the last id it saw (``Last-Event-ID`` header or ``?last_event_id=``). If that
entry is still in the user's log, every later entry is replayed from JetStream, then live delivery
continues with duplicates dropped by id. If it has expired, the stream starts with ``resync_required``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, get
from litestar.datastructures import State
from litestar.response import Stream
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Histogram

from fechatter_core.errors import unauthorized, validation_error
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
    sub = await ctx.js.subscribe(
        subject,
        stream=ctx.settings.nats.user_stream,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1),
        pending_msgs_limit=1024,
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            seq = msg.metadata.sequence.stream
            yield seq, msg.data
            if seq >= last.seq:
                return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def _entry_frame(seq: int, raw: bytes, workspace_id: int) -> bytes | None:
    """The SSE frame of a user-log entry, or None when it belongs to another of the user's workspaces."""
    entry = _decode_entry(raw)
    if entry.get("workspace_id", workspace_id) != workspace_id:
        return None
    event = entry.get("event", "message")
    delivered.labels(event).inc()
    occurred = entry.get("occurred_at")
    if isinstance(occurred, str):
        with contextlib.suppress(ValueError):
            from datetime import datetime

            created = datetime.fromisoformat(occurred.replace("Z", "+00:00")).timestamp()
            delivery_latency.observe(max(0.0, time.time() - created))
    return _frame(seq, event, _encode(entry.get("data", {})))


async def _stream(ctx: NotifyContext, claims: AccessClaims, last_id: int | None) -> AsyncIterator[bytes]:
    settings = ctx.settings.sse
    connection: Connection = ctx.registry.open(claims.user_id)
    sent = last_id or 0
    try:
        yield f"retry: {settings.retry_ms}\n\n".encode()
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
                yield _frame(None, "resync_required", b'{"reason":"history_expired"}')
        else:
            yield _frame(None, "connected", _encode({"user_id": claims.user_id}))
        while not connection.closed.is_set():
            remaining = claims.expires_at - time.time()
            if remaining <= 0:
                yield _frame(
                    None, "token_expired", b'{"reason":"access token expired; reconnect with a new one"}'
                )
                return
            try:
                seq, raw = await asyncio.wait_for(
                    connection.queue.get(), timeout=min(settings.ping_interval_seconds, remaining)
                )
            except TimeoutError:
                yield b": ping\n\n"
                continue
            if seq > sent:
                sent = seq
                if frame := _entry_frame(seq, raw, claims.workspace_id):
                    yield frame
    except Exception:
        # The headers are gone already; end the stream and let the client resume from its last id.
        log.exception("SSE stream of user %s failed after id %s", claims.user_id, sent)
    finally:
        ctx.registry.close(connection)


@get(["/sse", "/events"], summary="Server-Sent Events of the signed-in user, resumable by Last-Event-ID")
async def sse(request: Request[Any, Any, Any], state: State) -> Stream:
    ctx: NotifyContext = state.ctx
    claims = _authenticate(request, ctx)
    last_id = _last_event_id(request)
    return Stream(
        _stream(ctx, claims, last_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )
