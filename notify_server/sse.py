"""``GET /sse`` (alias ``/events``): a user's events as Server-Sent Events, resumable by id.

Resume: the client sends the last id it saw (``Last-Event-ID`` header or ``?last_event_id=``). If that
entry is still in the user's log, every later entry is replayed from JetStream, then live delivery
continues with duplicates dropped by id. If it has expired, the stream starts with ``resync_required``.

The endpoint speaks ASGI itself, beside the framework, and a stream is one coroutine waiting on one
future (``Connection.sleep``): a process holds tens of thousands of streams, idle for hours, so each is kept
to the least state that serves it. A client that stops reading leaves a write blocked in ``send``; the wait
on it is given up when the connection's buffer overflows, and the client resumes from its last id, so
nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Litestar
from litestar.types import Message, Receive, Scope, Send
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Histogram

from fechatter_core.db import sql
from fechatter_core.errors import ApiError, unauthorized, validation_error
from fechatter_core.events import user_log_subject
from fechatter_core.security import AccessClaims, TokenError, bearer_token, verify_access_token
from fechatter_core.web import send_api_error
from fechatter_core.workspace_access import require_workspace_member
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


class _Query:
    """The parts of the request line and headers a stream is opened with."""

    __slots__ = ("headers", "params")

    def __init__(self, scope: Scope) -> None:
        self.headers = {name: value.decode("latin-1") for name, value in scope["headers"]}
        self.params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))

    def header(self, name: bytes) -> str | None:
        return self.headers.get(name)


def _authenticate(query: _Query, ctx: NotifyContext) -> AccessClaims:
    token = bearer_token(query.header(b"authorization")) or query.params.get("access_token")
    if not token:
        raise unauthorized("Missing access token (Authorization header or ?access_token=)")
    try:
        return verify_access_token(ctx.settings.auth, token)
    except TokenError as exc:
        raise unauthorized(f"Invalid access token: {exc}") from None


def _last_event_id(query: _Query) -> int | None:
    raw = query.header(b"last-event-id") or query.params.get("last_event_id")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise validation_error("Last-Event-ID must be an id this server sent", "last_event_id")
    return int(raw)


def _opening(scope: Scope, ctx: NotifyContext) -> tuple[AccessClaims, int | None]:
    """Who opens the stream and where it resumes; ApiError when the request cannot be served."""
    query = _Query(scope)
    return _authenticate(query, ctx), _last_event_id(query)


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


async def _send(send: Send, connection: Connection, message: Message) -> bool:
    """Hand ``message`` to the server; False when the stream ended (too slow, or gone) before it went.

    Granian answers at once when the socket has room and with a future when it is full. Waiting on that
    future through the connection lets a client that stopped reading be dropped while the write is still
    blocked; on another server the write becomes a task.
    """
    sent = send(message)
    if not (asyncio.isfuture(sent) or asyncio.iscoroutine(sent)):
        await sent
        return True
    sending = asyncio.ensure_future(sent)
    sending.add_done_callback(connection.wake)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connection.write_timeout
    while not sending.done():
        if connection.ended is None and loop.time() >= deadline:
            # A client that stopped reading while few events came (too few to fill its buffer) is cut off
            # too; it resumes from its last id.
            connection.cut_off(f"a write blocked for {connection.write_timeout:g} s")
        if connection.ended is not None:
            sending.cancel()
            return False
        await connection.sleep(deadline)
    sending.result()
    return True


async def _write(send: Send, connection: Connection, chunk: _Chunk) -> bool:
    message = {"type": "http.response.body", "body": chunk.body, "more_body": True}
    if not await _send(send, connection, message):
        return False
    now = time.time()
    for item in chunk.items:
        if item.event is not None:
            _delivered(item.event).inc()
        if item.created is not None:
            delivery_latency.observe(max(0.0, now - item.created))
    return True


_delivered_by_event: dict[str, Any] = {}


def _delivered(event: str) -> Any:
    """The counter of one event name (``labels`` looked up per event was a tenth of notify's CPU)."""
    counter = _delivered_by_event.get(event)
    if counter is None:
        counter = _delivered_by_event[event] = delivered.labels(event)
    return counter


class _DisconnectWatch:
    """Reads the request's channel beside the stream (no task on Granian, whose ``receive`` is a future)
    and ends the connection when the client goes away."""

    __slots__ = ("_connection", "_reading", "_receive", "_stopped")

    def __init__(self, receive: Receive, connection: Connection) -> None:
        self._receive = receive
        self._connection = connection
        self._reading: asyncio.Future[Any] | None = None
        self._stopped = False
        self._next()

    def _next(self) -> None:
        self._reading = asyncio.ensure_future(self._receive())
        self._reading.add_done_callback(self._on_message)

    def _on_message(self, reading: asyncio.Future[Any]) -> None:
        # A message that arrived as the stream ended (its callback runs a moment later): read no more.
        if self._stopped or reading.cancelled():
            return
        if reading.exception() is not None or reading.result()["type"] == "http.disconnect":
            self._connection.end("disconnected")
            return
        self._next()  # a piece of a request body, which a GET has no use for

    def stop(self) -> None:
        self._stopped = True
        if self._reading is not None and not self._reading.done():
            self._reading.cancel()


def _leaves_workspace(chunk: _Chunk) -> bool:
    """The stream's user has been removed from (or left) the stream's workspace: nothing more of it is
    theirs, so the stream ends once that event is written (a chunk holds only the stream's workspace)."""
    return any(item.event == "workspace_member_removed" for item in chunk.items)


async def _stream(
    ctx: NotifyContext, claims: AccessClaims, connection: Connection, last_id: int | None, send: Send
) -> bool:
    """Write the stream until it ends; True when it ended by itself (token expiry) rather than by the
    client going away or falling behind, so it can be closed properly."""
    settings = ctx.settings.sse
    cursor = _Cursor(last_id or 0, claims.workspace_id)
    if not await _write(send, connection, _comment(f"retry: {settings.retry_ms}\n\n".encode())):
        return False
    if last_id is not None:
        if await _still_retained(ctx, claims.user_id, last_id):
            resumes.inc()
            # aclosing: a stream that ends mid-replay removes its JetStream consumer now, not when the
            # generator is collected.
            async with contextlib.aclosing(_replay(ctx, claims.user_id, last_id)) as batches:
                async for batch in batches:
                    chunk = cursor.chunk(batch)
                    if connection.ended is not None or (chunk and not await _write(send, connection, chunk)):
                        return False
                    if chunk and _leaves_workspace(chunk):
                        return True
        else:
            resyncs.inc()
            if not await _write(
                send, connection, _single("resync_required", b'{"reason":"history_expired"}')
            ):
                return False
    elif not await _write(send, connection, _single("connected", _encode({"user_id": claims.user_id}))):
        return False
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while connection.ended is None:
        # Before the waiting events: a stream kept busy (a client reading steadily but behind) still ends
        # when its token does.
        remaining = claims.expires_at - time.time()
        if remaining <= 0:
            expired = _single("token_expired", b'{"reason":"access token expired; reconnect with a new one"}')
            return await _write(send, connection, expired)
        if connection.pending:
            if chunk := cursor.chunk(connection.take()):
                if not await _write(send, connection, chunk):
                    return False
                if _leaves_workspace(chunk):
                    return True
                quiet_since = loop.time()
            continue
        now = loop.time()
        ping_at = quiet_since + settings.ping_interval_seconds
        if ping_at <= now:
            if not await _write(send, connection, _comment(b": ping\n\n")):
                return False
            quiet_since = loop.time()
            continue
        await connection.sleep(min(ping_at, now + remaining))
    return False


async def _require_member(ctx: NotifyContext, claims: AccessClaims) -> None:
    """A token that outlived its holder's membership opens no stream: it would mark them online and bring
    the workspace's presence. Without the database to ask, the client is told to come back (503), as when
    the stream is starting."""
    try:
        async with sql.connect(ctx.engine) as conn:
            await require_workspace_member(conn, claims)
    except ApiError:
        raise
    except Exception:
        log.warning("cannot check a workspace membership for an SSE stream", exc_info=True)
        raise ApiError(
            503, "unavailable", "The event stream cannot open right now; try again shortly"
        ) from None


class SseEndpoint:
    """``GET /sse`` and ``GET /events``: the signed-in user's events, resumable by Last-Event-ID. Served
    beside the framework on the server's own channels (``fechatter_core.web.DirectRoute``)."""

    def __init__(self, app: Litestar) -> None:
        self._app = app  # its lifespan sets ``state.ctx``

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, headers: list[tuple[bytes, bytes]]
    ) -> int:
        ctx: NotifyContext | None = getattr(self._app.state, "ctx", None)
        try:
            if scope["method"] not in ("GET", "HEAD"):
                raise ApiError(
                    405, "method_not_allowed", "Use GET to open the event stream", headers={"Allow": "GET"}
                )
            if ctx is None:
                raise ApiError(503, "unavailable", "The event stream is starting; try again shortly")
            claims, last_id = _opening(scope, ctx)
            await _require_member(ctx, claims)
            connection = None
            if scope["method"] == "GET":
                connection = await ctx.registry.open(claims.user_id, claims.workspace_id)
        except ApiError as exc:
            return await send_api_error(send, exc, headers)
        except Exception:
            log.exception("opening an SSE stream failed")
            failed = ApiError(500, "internal_error", "Internal server error")
            return await send_api_error(send, failed, headers)
        start = {"type": "http.response.start", "status": 200, "headers": [*_HEADERS, *headers]}
        if connection is None:
            # HEAD: the headers a stream would get, and no stream: nothing opens, no presence is announced.
            with contextlib.suppress(Exception):  # a client gone already has nothing to be told
                await send(start)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            return 200
        watch: _DisconnectWatch | None = None
        try:
            if not await _send(send, connection, start):
                return 200
            watch = _DisconnectWatch(receive, connection)
            try:
                if await _stream(ctx, claims, connection, last_id, send):
                    await _send(
                        send, connection, {"type": "http.response.body", "body": b"", "more_body": False}
                    )
            except Exception as exc:
                # The headers are gone already; end the stream and let the client resume from its last id.
                # A write refused because the client has just gone is not worth a warning.
                if connection.ended != "disconnected":
                    log.warning("SSE stream of user %s failed: %r", claims.user_id, exc)
        finally:
            if watch is not None:
                watch.stop()
            await ctx.registry.close(connection)
        return 200
