"""Search on Meilisearch: a REST client, the index's settings, the indexer and the query translation.

The index holds one document per message: ``{id, chat_id, workspace_id, sender_id, content, created_at
(unix seconds), has_file, deleted}``. It is fed by a durable JetStream consumer of ``fechatter.message.*``
(:class:`MeiliIndexer`, started by the chat API's lifespan when ``search.engine`` is ``meilisearch``) and
rebuilt from PostgreSQL by ``python -m fechatter_server.search reindex``. The indexer reads each changed
message's current row from PostgreSQL rather than trusting the event's copy, so redelivered or reordered
events still leave the index at the latest state.

At query time PostgreSQL still decides: the caller's chats (in the token's workspace) become the filter
``chat_id IN [...]``, and the hits are re-read from PostgreSQL, which drops a message deleted or a chat left
since it was indexed. Meilisearch's own matching applies (whole words, prefix on the last word, typo
tolerance, ``"phrases"``); substrings inside a word are not found by this engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterable
from typing import Any

import httpx
import msgspec
import sqlalchemy as sa
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from fechatter_core.db.schema import MESSAGE_COLUMNS, chat_members, chats, message_files, messages
from fechatter_core.errors import ApiError
from fechatter_core.events import decode_event
from fechatter_core.security import AccessClaims
from fechatter_core.settings import FechatterSettings, SearchSettings
from fechatter_server.messages.decorate import decorate
from fechatter_server.search.engine import SearchPage
from fechatter_server.search.highlight import highlight, marked_to_html
from fechatter_server.search.query import ParsedQuery
from fechatter_server.views import SearchHitOut, message_out

log = logging.getLogger(__name__)

DURABLE = "search-indexer"
SUBJECTS = "fechatter.message.*"
INDEXED_EVENTS = frozenset({"message.created", "message.updated", "message.deleted"})
BATCH = 100

INDEX_SETTINGS: dict[str, Any] = {
    "searchableAttributes": ["content"],
    "filterableAttributes": ["chat_id", "workspace_id", "sender_id", "created_at", "has_file", "deleted"],
    # Recency breaks ties between equally relevant hits; ids grow with time and, unlike created_at
    # (seconds), never tie.
    "sortableAttributes": ["id", "created_at"],
    "displayedAttributes": ["*"],
}


class MeiliError(Exception):
    pass


class MeiliClient:
    """The few routes of Meilisearch's REST API that search needs."""

    def __init__(self, settings: SearchSettings) -> None:
        headers = {"Content-Type": "application/json"}
        if settings.meili_master_key:
            headers["Authorization"] = f"Bearer {settings.meili_master_key}"
        self.index = settings.meili_index
        self._http = httpx.AsyncClient(
            base_url=settings.meili_url.rstrip("/"), headers=headers, timeout=settings.meili_timeout_seconds
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise MeiliError(f"{method} {path}: {type(exc).__name__}") from None
        if response.status_code >= 400:
            code = ""
            with contextlib.suppress(ValueError, AttributeError):
                code = response.json().get("code", "")
            raise MeiliError(f"{method} {path}: HTTP {response.status_code} {code}".rstrip())
        return response.json() if response.content else None

    async def health(self) -> None:
        await self._call("GET", "/health")

    async def ensure_index(self) -> int:
        """Create the index (an existing one makes that task fail harmlessly) and apply its settings;
        returns the settings task's uid."""
        await self._call("POST", "/indexes", {"uid": self.index, "primaryKey": "id"})
        task = await self._call("PATCH", f"/indexes/{self.index}/settings", INDEX_SETTINGS)
        return int(task["taskUid"])

    async def add_documents(self, documents: list[dict[str, Any]]) -> int:
        task = await self._call("POST", f"/indexes/{self.index}/documents?primaryKey=id", documents)
        return int(task["taskUid"])

    async def delete_documents(self, ids: list[int]) -> int:
        task = await self._call("POST", f"/indexes/{self.index}/documents/delete-batch", ids)
        return int(task["taskUid"])

    async def search(self, body: dict[str, Any]) -> dict[str, Any]:
        result = await self._call("POST", f"/indexes/{self.index}/search", body)
        if not isinstance(result, dict) or not isinstance(result.get("hits"), list):
            raise MeiliError("search: unexpected answer")
        return result

    async def wait_for_task(self, uid: int, timeout: float = 60.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            task = await self._call("GET", f"/tasks/{uid}")
            if task.get("status") in ("succeeded", "failed", "canceled"):
                return task  # type: ignore[no-any-return]
            if asyncio.get_running_loop().time() > deadline:
                raise MeiliError(f"task {uid} still {task.get('status')} after {timeout} s")
            await asyncio.sleep(0.1)


# -- documents ---------------------------------------------------------------------------------------

_HAS_FILE = sa.exists().where(message_files.c.message_id == messages.c.id).label("has_file")
_DOC_COLUMNS = (
    messages.c.id,
    messages.c.chat_id,
    chats.c.workspace_id,
    messages.c.sender_id,
    messages.c.content,
    messages.c.created_at,
    messages.c.deleted_at,
    _HAS_FILE,
)


def document(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "chat_id": row.chat_id,
        "workspace_id": row.workspace_id,
        "sender_id": row.sender_id,
        "content": row.content,
        "created_at": int(row.created_at.timestamp()),
        "has_file": bool(row.has_file),
        "deleted": False,
    }


async def sync_messages(engine: AsyncEngine, client: MeiliClient, ids: Iterable[int]) -> int | None:
    """Bring the index to the current state of these messages: upsert the live ones, remove the deleted
    or vanished ones. Returns the last task's uid (None when there was nothing to do)."""
    wanted = sorted(set(ids))
    if not wanted:
        return None
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(*_DOC_COLUMNS)
                .select_from(messages.join(chats, chats.c.id == messages.c.chat_id))
                .where(messages.c.id.in_(wanted))
            )
        ).all()
    live = [row for row in rows if row.deleted_at is None]
    gone = sorted(set(wanted) - {row.id for row in live})
    task = None
    if live:
        task = await client.add_documents([document(row) for row in live])
    if gone:
        task = await client.delete_documents(gone)
    return task


async def reindex(engine: AsyncEngine, client: MeiliClient, *, batch: int = 1000) -> int:
    """Rebuild the index from PostgreSQL (idempotent upserts by id, so searching goes on meanwhile);
    returns the number of messages indexed."""
    await client.wait_for_task(await client.ensure_index())
    last_id, count, task = 0, 0, None
    while True:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(*_DOC_COLUMNS)
                    .select_from(messages.join(chats, chats.c.id == messages.c.chat_id))
                    .where(messages.c.id > last_id)
                    .order_by(messages.c.id)
                    .limit(batch)
                )
            ).all()
        if not rows:
            break
        last_id = rows[-1].id
        live = [row for row in rows if row.deleted_at is None]
        deleted = [row.id for row in rows if row.deleted_at is not None]
        if live:
            task = await client.add_documents([document(row) for row in live])
            count += len(live)
        if deleted:
            task = await client.delete_documents(deleted)
    if task is not None:
        result = await client.wait_for_task(task)
        if result.get("status") != "succeeded":
            raise MeiliError(f"reindex: last task {task} ended {result.get('status')}")
    return count


class MeiliIndexer:
    """A durable JetStream consumer that keeps the index in step with message changes."""

    def __init__(self, js: JetStreamContext, engine: AsyncEngine, client: MeiliClient, stream: str) -> None:
        self._js = js
        self._engine = engine
        self._client = client
        self._stream = stream
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sub = await self._js.pull_subscribe(
            SUBJECTS,
            durable=DURABLE,
            stream=self._stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=30,
                max_ack_pending=BATCH,
                max_deliver=-1,
            ),
        )
        self._task = asyncio.create_task(self._run(), name="search-indexer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # A pull subscription left open would hold up the connection's drain at shutdown.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._sub.unsubscribe(), timeout=2)

    async def _run(self) -> None:
        ready = False
        while True:
            try:
                if not ready:
                    await self._client.ensure_index()
                    ready = True
                batch = await self._sub.fetch(BATCH, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("search indexer: %s", exc)
                await asyncio.sleep(1.0)
                continue
            ids: list[int] = []
            for msg in batch:
                try:
                    event = decode_event(msg.data)
                except msgspec.DecodeError:
                    continue
                message_id = event.data.get("id")
                if event.type in INDEXED_EVENTS and isinstance(message_id, int):
                    ids.append(message_id)
            try:
                await sync_messages(self._engine, self._client, ids)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Not acked: redelivered after ack_wait; upserts by id make the retry harmless.
                log.warning("search indexer: %d events not indexed yet: %s", len(batch), exc)
                await asyncio.sleep(1.0)
                continue
            for msg in batch:
                await msg.ack()


# -- queries -------------------------------------------------------------------------------------------


def meili_query(query: ParsedQuery) -> str:
    """Words as they are, phrases in double quotes (Meilisearch's phrase search)."""
    parts = [t.replace('"', " ") for t in query.terms] + [
        f'"{p.replace(chr(34), " ")}"' for p in query.phrases
    ]
    return " ".join(parts)


def meili_filter(query: ParsedQuery, chat_ids: list[int]) -> str:
    """The filter expression; every value is an integer or a boolean, so nothing needs quoting."""
    clauses = [f"chat_id IN [{', '.join(map(str, chat_ids))}]", "deleted = false"]
    if query.senders:
        clauses.append(f"sender_id IN [{', '.join(map(str, query.senders))}]")
    if query.after is not None:
        clauses.append(f"created_at >= {int(query.after.timestamp())}")
    if query.before is not None:
        clauses.append(f"created_at < {int(query.before.timestamp())}")
    if query.has_file:
        clauses.append("has_file = true")
    return " AND ".join(clauses)


def search_body(
    query: ParsedQuery, chat_ids: list[int], *, limit: int, offset: int, tag: str, crop_words: int
) -> dict[str, Any]:
    return {
        "q": meili_query(query),
        "filter": meili_filter(query, chat_ids),
        "sort": ["id:desc"],
        "offset": offset,
        "limit": limit + 1,
        "attributesToRetrieve": ["id", "content"],
        "attributesToHighlight": ["content"],
        "attributesToCrop": ["content"],
        "cropLength": crop_words,
        "cropMarker": "…",
        "highlightPreTag": f"[[{tag}]]",
        "highlightPostTag": f"[[/{tag}]]",
    }


class MeiliSearch:
    name = "meilisearch"

    def __init__(self, settings: FechatterSettings, engine: AsyncEngine, js: JetStreamContext) -> None:
        self._settings = settings.search
        self._engine = engine
        self.client = MeiliClient(settings.search)
        self.indexer = MeiliIndexer(js, engine, self.client, settings.nats.stream)

    async def start(self) -> None:
        await self.indexer.start()

    async def close(self) -> None:
        await self.indexer.stop()
        await self.client.close()

    async def _member_chats(self, caller: AccessClaims, query: ParsedQuery, chat_id: int | None) -> list[int]:
        statement = (
            sa.select(chat_members.c.chat_id)
            .join(chats, chats.c.id == chat_members.c.chat_id)
            .where(chat_members.c.user_id == caller.user_id, chats.c.workspace_id == caller.workspace_id)
            .order_by(chat_members.c.chat_id)
        )
        if chat_id is not None:
            statement = statement.where(chat_members.c.chat_id == chat_id)
        if query.chats:
            statement = statement.where(chat_members.c.chat_id.in_(query.chats))
        async with self._engine.connect() as conn:
            return list((await conn.scalars(statement)).all())

    async def search(
        self, caller: AccessClaims, query: ParsedQuery, *, chat_id: int | None, limit: int, offset: int
    ) -> SearchPage:
        chat_ids = await self._member_chats(caller, query, chat_id)
        if not chat_ids:
            return SearchPage(hits=[], has_more=False)
        tag = secrets.token_hex(6)
        crop_words = max(10, self._settings.snippet_context_chars // 3)
        body = search_body(query, chat_ids, limit=limit, offset=offset, tag=tag, crop_words=crop_words)
        try:
            result = await self.client.search(body)
        except MeiliError as exc:
            log.warning("meilisearch: %s", exc)
            raise ApiError(503, "unavailable", "Search is unavailable right now, try again shortly") from None
        found = [hit for hit in result["hits"] if isinstance(hit, dict) and isinstance(hit.get("id"), int)]
        has_more = len(found) > limit
        found = found[:limit]
        ids = [hit["id"] for hit in found]
        rows = await self._current_rows(ids, chat_ids)
        hits: list[SearchHitOut] = []
        for hit in found:
            row = rows.get(hit["id"])
            if row is None:
                continue  # deleted, or its chat left, since it was indexed
            formatted = (hit.get("_formatted") or {}).get("content")
            if isinstance(formatted, str) and hit.get("content") == row.content:
                snippet = marked_to_html(formatted, f"[[{tag}]]", f"[[/{tag}]]")
            else:  # the index has not caught up with an edit yet
                snippet = highlight(row.content, query.texts, self._settings.snippet_context_chars)
            hits.append(SearchHitOut(message=message_out(row), highlight=snippet))
        async with self._engine.connect() as conn:
            await decorate(conn, [hit.message for hit in hits])
        return SearchPage(hits=hits, has_more=has_more)

    async def _current_rows(self, ids: list[int], chat_ids: list[int]) -> dict[int, Any]:
        if not ids:
            return {}
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(*MESSAGE_COLUMNS).where(
                        messages.c.id.in_(ids),
                        messages.c.chat_id.in_(chat_ids),
                        messages.c.deleted_at.is_(None),
                    )
                )
            ).all()
        return {row.id: row for row in rows}
