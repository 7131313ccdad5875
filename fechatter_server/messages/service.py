"""Sending, paging, editing and deleting messages.

Send: the chat row is locked by ``UPDATE chats SET last_seq = last_seq + 1`` so ``seq`` is gap-free (a
send that fails releases its number) and a retry with the same idempotency key finds the original. A plain
message (no files, no mentions) is one statement with its outbox event: one round trip, atomic on its own.

Edit and delete lock only the message row. They take ``FOR NO KEY UPDATE`` rather than ``FOR UPDATE``: it
serialises concurrent edits and deletes of one message just the same, but does not conflict with the
``KEY SHARE`` lock a concurrent send's ``reply_to`` foreign key check takes on the same row, so replying to
a message being edited neither waits nor risks a deadlock against the chat row lock that send holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import sqlalchemy as sa

from fechatter_core import events
from fechatter_core.db import sql
from fechatter_core.db.schema import (
    MESSAGE_COLUMNS,
    message_edits,
    message_files,
    message_pins,
    message_reactions,
    messages,
)
from fechatter_core.db.sql import Connection, Sql
from fechatter_core.errors import ApiError, conflict, forbidden, not_found, validation_error
from fechatter_core.outbox import record
from fechatter_core.security import AccessClaims
from fechatter_server.chats.queries import MEMBERSHIP_SQL, check_member, refuse_if_archived, require_member
from fechatter_server.context import AppContext
from fechatter_server.files.queries import file_ids_of, own_files
from fechatter_server.mentions.parse import parse
from fechatter_server.mentions.service import drop_mentions, store_mentions
from fechatter_server.messages.decorate import DECORATION, decorate, decorate_with
from fechatter_server.messages.schemas import EditMessageRequest, SendMessageRequest
from fechatter_server.realtime.service import stopped_typing
from fechatter_server.views import (
    MessageEditOut,
    MessageOut,
    iso,
    message_edit_out,
    message_of,
    message_out,
    to_builtins,
)

# The columns of a message (aliased ``m``) that ``message_out`` reads, for statements written as SQL.
MESSAGE_SQL_COLUMNS = (
    "m.id, m.chat_id, m.seq, m.sender_id, m.content, m.reply_to, m.idempotency_key, m.created_at, "
    "m.edited_at, m.deleted_at, m.reply_count"
)


def unpinned_event(caller: AccessClaims, chat_id: int, message_id: int) -> events.Event:
    return events.new_event(
        events.MESSAGE_UNPINNED,
        workspace_id=caller.workspace_id,
        actor_id=caller.user_id,
        chat_id=chat_id,
        data={"chat_id": chat_id, "message_id": message_id, "unpinned_by": caller.user_id},
    )


# Roles of chat_members that may delete other members' messages.
_MODERATOR_ROLES = frozenset({"owner", "admin"})


def _clean_content(ctx: AppContext, raw: str, *, required: bool) -> str:
    """The one text rule of send and edit (API.md): trimmed, at most the configured length, no NUL."""
    content = raw.strip()
    limit = ctx.settings.limits.message_max_chars
    if required and not content:
        raise validation_error("content must not be empty", "content")
    if len(content) > limit:
        raise validation_error(f"content is longer than {limit} characters", "content")
    if "\x00" in content:
        raise validation_error("content must not contain NUL characters", "content")
    return content


def _check_content(ctx: AppContext, data: SendMessageRequest) -> str:
    # A message carrying files may have no text.
    content = _clean_content(ctx, data.content, required=not data.files)
    limit = ctx.settings.files.per_message_max
    if len(data.files) > limit:
        raise validation_error(f"A message carries at most {limit} files", "files")
    if len(set(data.files)) != len(data.files):
        raise validation_error("A file may appear only once in a message", "files")
    return content


async def _check_files(conn: Connection, caller: AccessClaims, file_ids: list[int]) -> None:
    """Every attached file must be the sender's own upload in this workspace. Files rows never change,
    so checking before the sending transaction is as good as inside it."""
    if not file_ids:
        return
    owned = await own_files(conn, caller, file_ids)
    if len(owned) != len(file_ids):
        raise validation_error("files must be ids of files you uploaded in this workspace", "files")


# The message sent with a key, and the text it was sent with: an edit moves that text into message_edits,
# where the oldest edit row holds it.
_EXISTING = Sql(
    """
    SELECT __MESSAGE__,
           COALESCE((SELECT e.previous_content FROM message_edits e WHERE e.message_id = m.id
                     ORDER BY e.id LIMIT 1), m.content) AS original_content
    FROM messages m
    WHERE m.chat_id = :chat_id AND m.sender_id = :sender_id AND m.idempotency_key = :key
    """.replace("__MESSAGE__", MESSAGE_SQL_COLUMNS)
)


async def _replay(
    conn: Connection, caller: AccessClaims, chat_id: int, key: str, data: SendMessageRequest, content: str
) -> MessageOut | None:
    """The message sent earlier with this key, or None. A retry is compared with what was sent (text,
    files, reply_to), not with a later edit. A deleted message's text and files are gone, so its key alone
    identifies it: the retry gets the original message, shown as deleted."""
    # A retry is answered only to a member: someone removed since sees nothing of the chat any more.
    await require_member(conn, caller, chat_id)
    row = await _EXISTING.one_or_none(conn, chat_id=chat_id, sender_id=caller.user_id, key=key)
    if row is None:
        return None
    same = row.deleted_at is not None or (
        row.original_content == content and await file_ids_of(conn, row.id) == data.files
    )
    if not same or row.reply_to != data.reply_to:
        raise ApiError(
            409, "idempotency_conflict", "This idempotency key was already used for a different message"
        )
    message = message_out(row)
    await decorate(conn, [message])
    return message


async def send_message(
    ctx: AppContext, caller: AccessClaims, chat_id: int, data: SendMessageRequest, header_key: str | None
) -> tuple[MessageOut, bool]:
    """Returns the message and whether it was created now (False: an idempotent replay)."""
    content = _check_content(ctx, data)
    key = data.idempotency_key or header_key
    if key is not None and not 1 <= len(key) <= 128:
        raise validation_error("idempotency key must be 1-128 characters", "idempotency_key")

    async with sql.connect(ctx.engine) as conn:
        await _check_files(conn, caller, data.files)
        try:
            if data.files or parse(content).names_anyone:
                # Files and mentions are rows of their own, and part of the event: a transaction.
                async with sql.atomic(conn):
                    message = await _insert_decorated(conn, caller, chat_id, content, data, key)
            else:
                message = await _insert_plain(conn, caller, chat_id, content, data.reply_to, key)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "messages_idempotency_key":
                raise
            # The key was used before (or by a concurrent send that took the chat lock first): the failed
            # statement changed nothing, the seq it had taken included, and the retry gets the original.
            found = await _replay(conn, caller, chat_id, key or "", data, content)
            assert found is not None
            return found, False
        if message is None:
            return await _refused(conn, caller, chat_id, data, key, content), False
    ctx.publisher.wake()
    await stopped_typing(ctx, caller, chat_id)
    return message, True


# The send, in one statement, so it is atomic without BEGIN and COMMIT: take the chat's next seq (the UPDATE
# locks the chat row until the statement commits, so seq is gap-free; it matches nothing unless the sender
# is a member of an unarchived chat of the workspace and reply_to, if any, is a message of the chat),
# insert the message (with the decoration flags the send knows of), move the sender's read position to it
# (posting in a chat means having seen it) and,
# given ``event``, write the outbox row of message.created, with the id and seq the insert assigned. A key
# already used by the sender in the chat violates ``messages_idempotency_key``: the error undoes the whole
# statement, the seq included. No row: the chat refused the send.
_SEND = Sql(
    """
    WITH next AS (
        UPDATE chats SET last_seq = last_seq + 1, last_message_at = now()
        WHERE id = :chat_id AND workspace_id = :workspace_id AND archived_at IS NULL
          AND EXISTS (SELECT 1 FROM chat_members WHERE chat_id = :chat_id AND user_id = :sender_id)
          AND (CAST(:reply_to AS bigint) IS NULL
               OR EXISTS (SELECT 1 FROM messages r WHERE r.id = :reply_to AND r.chat_id = :chat_id))
        RETURNING last_seq
    ), m AS (
        INSERT INTO messages (chat_id, seq, sender_id, content, reply_to, idempotency_key, created_at,
                              has_files, has_mentions)
        SELECT :chat_id, next.last_seq, :sender_id, :content, :reply_to, :key,
               CAST(:created_at AS timestamptz), :has_files, :has_mentions
        FROM next
        RETURNING *
    ), seen AS (
        UPDATE chat_members SET last_read_seq = m.seq FROM m
        WHERE chat_members.chat_id = :chat_id AND chat_members.user_id = :sender_id
          AND chat_members.last_read_seq < m.seq
    ), announced AS (
        INSERT INTO outbox (event_id, subject, payload)
        SELECT CAST(:event_id AS uuid), :subject, convert_to(CAST(jsonb_set(
                   jsonb_set(CAST(:event AS jsonb), '{data,id}', to_jsonb(m.id)),
                   '{data,seq}', to_jsonb(m.seq)
               ) AS text), 'UTF8')
        FROM m WHERE CAST(:event AS jsonb) IS NOT NULL
    )
    SELECT __MESSAGE__ FROM m
    """.replace("__MESSAGE__", MESSAGE_SQL_COLUMNS)
)
_ATTACH = Sql(
    """
    INSERT INTO message_files (message_id, file_id, position)
    SELECT :message_id, f.file_id, f.position - 1
    FROM unnest(CAST(:file_ids AS bigint[])) WITH ORDINALITY AS f(file_id, position)
    """
)


def _created_event(caller: AccessClaims, chat_id: int, message: MessageOut) -> events.Event:
    return events.new_event(
        events.MESSAGE_CREATED,
        workspace_id=caller.workspace_id,
        actor_id=caller.user_id,
        chat_id=chat_id,
        data=to_builtins(message),
    )


async def _insert_plain(
    conn: asyncpg.Connection,
    caller: AccessClaims,
    chat_id: int,
    content: str,
    reply_to: int | None,
    key: str | None,
) -> MessageOut | None:
    """A message without files or mentions, with its event, in one round trip and no transaction. The
    event is the message as it will read, with id and seq left for the statement to fill in; so is
    created_at, chosen here rather than by the database."""
    created_at = datetime.now(UTC)
    draft = MessageOut(
        id=0,
        chat_id=chat_id,
        seq=0,
        sender_id=caller.user_id,
        content=content,
        files=[],
        reply_to=reply_to,
        idempotency_key=key,
        created_at=iso(created_at) or "",
        edited_at=None,
        deleted=False,
    )
    event = _created_event(caller, chat_id, draft)
    row = await _SEND.one_or_none(
        conn,
        **_send_params(caller, chat_id, content, reply_to, key, created_at),
        event_id=event.id,
        subject=event.subject,
        event=events.encode_event(event).decode(),
    )
    return None if row is None else message_out(row)


async def _insert_decorated(
    conn: asyncpg.Connection,
    caller: AccessClaims,
    chat_id: int,
    content: str,
    data: SendMessageRequest,
    key: str | None,
) -> MessageOut | None:
    """A message with files or mentions, inside the caller's transaction: the event, written last, carries
    them."""
    params = _send_params(
        caller,
        chat_id,
        content,
        data.reply_to,
        key,
        datetime.now(UTC),
        has_files=bool(data.files),
        has_mentions=parse(content).names_anyone,
    )
    row = await _SEND.one_or_none(conn, **params, event_id=None, subject=None, event=None)
    if row is None:
        return None
    message = message_out(row)
    if data.files:  # without files the lists stay empty: no query
        await _ATTACH.execute(conn, message_id=row.id, file_ids=data.files)
        await decorate(conn, [message])
    message.mentions = await store_mentions(conn, row)
    await record(conn, _created_event(caller, chat_id, message))
    return message


def _send_params(
    caller: AccessClaims,
    chat_id: int,
    content: str,
    reply_to: int | None,
    key: str | None,
    created_at: datetime,
    *,
    has_files: bool = False,
    has_mentions: bool = False,
) -> dict[str, Any]:
    """``has_files``, ``has_mentions``: the message's flags (migration 0006), set by the insert itself when
    the send attaches rows of that kind, so that the triggers that keep them need not write the row again."""
    return {
        "chat_id": chat_id,
        "workspace_id": caller.workspace_id,
        "sender_id": caller.user_id,
        "content": content,
        "reply_to": reply_to,
        "key": key,
        "created_at": created_at,
        "has_files": has_files,
        "has_mentions": has_mentions,
    }


async def _refused(
    conn: Connection,
    caller: AccessClaims,
    chat_id: int,
    data: SendMessageRequest,
    key: str | None,
    content: str,
) -> MessageOut:
    """The send inserted nothing: a retry of a message sent before the chat was archived (or before
    reply_to was deleted) still gets the original; otherwise the precise error."""
    if key is not None:
        found = await _replay(conn, caller, chat_id, key, data, content)
        if found is not None:
            return found
    member = await require_member(conn, caller, chat_id)  # raises the precise 404 / 403
    refuse_if_archived(member)
    if data.reply_to is not None:
        raise validation_error("reply_to is not a message of this chat", "reply_to")
    # The chat refused the send, yet allows it now: membership or the archive changed in between. Nothing
    # was written; the client may send again.
    raise conflict("conflict", "The chat changed while the message was being sent; send it again")


# A page of messages with their decoration, after the caller's membership (in the same round trip): the
# newest before a seq (or the newest of all) in descending order, or the oldest after a seq in ascending
# order. No row: the chat is not in the workspace; one row with a NULL role: not a member; rows without a
# message id: no message. One message more than asked says whether more follow.
_PAGE = (
    """
    SELECT member.role, page.*
    FROM (__MEMBERSHIP__) AS member
    LEFT JOIN LATERAL (
        SELECT __MESSAGE__, __DECORATION__ FROM messages m
        WHERE m.chat_id = member.id AND member.role IS NOT NULL __WHERE__
        LIMIT :limit
    ) AS page ON true
    """.replace("__MEMBERSHIP__", MEMBERSHIP_SQL)
    .replace("__MESSAGE__", MESSAGE_SQL_COLUMNS)
    .replace("__DECORATION__", DECORATION)
)
_PAGE_LATEST = Sql(_PAGE.replace("__WHERE__", "ORDER BY m.seq DESC"))
_PAGE_BEFORE = Sql(_PAGE.replace("__WHERE__", "AND m.seq < :before ORDER BY m.seq DESC"))
_PAGE_AFTER = Sql(_PAGE.replace("__WHERE__", "AND m.seq > :after ORDER BY m.seq"))


async def list_messages(
    ctx: AppContext, caller: AccessClaims, chat_id: int, *, limit: int, before: int | None, after: int | None
) -> tuple[list[MessageOut], bool]:
    if before is not None and after is not None:
        raise validation_error("Use either before or after, not both", "before")
    who = {"chat_id": chat_id, "user_id": caller.user_id, "workspace_id": caller.workspace_id}
    async with sql.connect(ctx.engine) as conn:
        if after is not None:
            rows = await _PAGE_AFTER.all(conn, **who, after=after, limit=limit + 1)
        elif before is not None:
            rows = await _PAGE_BEFORE.all(conn, **who, before=before, limit=limit + 1)
        else:
            rows = await _PAGE_LATEST.all(conn, **who, limit=limit + 1)
    check_member(rows[0] if rows else None)
    if rows[0].id is None:  # the chat has no message (in that direction)
        return [], False
    has_more = len(rows) > limit
    rows = rows[:limit]
    if after is None:
        rows.reverse()
    items = []
    # A page reads hundreds of columns: each record is unpacked in the order of _PAGE's columns (role, the
    # message's MESSAGE_SQL_COLUMNS, the three DECORATION columns) rather than read column by column by name.
    for page_row in rows:
        _, *columns, deco_files, deco_reactions, deco_mentions = page_row
        message = message_of(*columns)
        decorate_with(message, deco_files, deco_reactions, deco_mentions)
        items.append(message)
    return items, has_more


async def message_in_chat(conn: Any, chat_id: int, message_id: int, *, lock: bool = False) -> Any:
    """The message, which must belong to ``chat_id``: an id of another chat is as unknown as a missing one."""
    query = sa.select(*MESSAGE_COLUMNS).where(messages.c.id == message_id, messages.c.chat_id == chat_id)
    if lock:
        query = query.with_for_update(key_share=True)  # FOR NO KEY UPDATE, see the module docstring
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        raise not_found("Message not found")
    return row


async def edit_message(
    ctx: AppContext, caller: AccessClaims, chat_id: int, message_id: int, data: EditMessageRequest
) -> MessageOut:
    """Replace the text (sender only); the previous text goes to the history. The same text is a no-op."""
    content = _clean_content(ctx, data.content, required=True)
    message, changed = await _edit(ctx, caller, chat_id, message_id, content)
    if changed:
        ctx.publisher.wake()
    return message


async def _edit(
    ctx: AppContext, caller: AccessClaims, chat_id: int, message_id: int, content: str
) -> tuple[MessageOut, bool]:
    async with ctx.engine.begin() as conn:
        member = await require_member(conn, caller, chat_id)
        row = await message_in_chat(conn, chat_id, message_id, lock=True)
        if row.sender_id != caller.user_id:
            raise forbidden("Only the sender can edit a message")
        if row.deleted_at is not None:
            raise conflict("conflict", "The message was deleted")
        refuse_if_archived(member)
        if row.content == content:
            # Nothing changed: no history entry, no event, and edited_at keeps its meaning.
            same = message_out(row)
            await decorate(conn, [same])
            return same, False
        await conn.execute(
            message_edits.insert().values(
                message_id=row.id, previous_content=row.content, edited_at=sa.func.now()
            )
        )
        updated = (
            await conn.execute(
                messages.update()
                .where(messages.c.id == row.id)
                .values(content=content, edited_at=sa.func.now())
                .returning(*MESSAGE_COLUMNS)
            )
        ).one()
        await store_mentions(conn, updated, replace=True)
        message = message_out(updated)
        await decorate(conn, [message])
        await record(
            conn,
            events.new_event(
                events.MESSAGE_UPDATED,
                workspace_id=caller.workspace_id,
                actor_id=caller.user_id,
                chat_id=chat_id,
                data=to_builtins(message),
            ),
        )
    return message, True


async def delete_message(ctx: AppContext, caller: AccessClaims, chat_id: int, message_id: int) -> MessageOut:
    """Soft delete by the sender or a chat owner/admin; deleting a deleted message answers it again."""
    message, changed = await _delete(ctx, caller, chat_id, message_id)
    if changed:
        ctx.publisher.wake()
    return message


async def _delete(
    ctx: AppContext, caller: AccessClaims, chat_id: int, message_id: int
) -> tuple[MessageOut, bool]:
    async with ctx.engine.begin() as conn:
        member = await require_member(conn, caller, chat_id)
        row = await message_in_chat(conn, chat_id, message_id, lock=True)
        if row.sender_id != caller.user_id and member.role not in _MODERATOR_ROLES:
            raise forbidden("Only the sender or a chat owner or admin can delete a message")
        if row.deleted_at is not None:
            return message_out(row), False
        # The row stays so seq keeps no gap and replies keep their target; its text, current and past,
        # must not survive the delete.
        await conn.execute(message_edits.delete().where(message_edits.c.message_id == row.id))
        # Its files leave the message too (the chat's members lose access through it); the stored bytes
        # stay, since other uploads and messages may share them.
        await conn.execute(message_files.delete().where(message_files.c.message_id == row.id))
        # Nor its reactions, mentions and pin: a deleted message is no longer anyone's business.
        await conn.execute(message_reactions.delete().where(message_reactions.c.message_id == row.id))
        await drop_mentions(conn, row.id)
        unpinned = await conn.scalar(
            message_pins.delete()
            .where(message_pins.c.message_id == row.id)
            .returning(message_pins.c.message_id)
        )
        updated = (
            await conn.execute(
                messages.update()
                .where(messages.c.id == row.id)
                .values(content="", deleted_at=sa.func.now())
                .returning(*MESSAGE_COLUMNS)
            )
        ).one()
        message = message_out(updated)
        await record(
            conn,
            events.new_event(
                events.MESSAGE_DELETED,
                workspace_id=caller.workspace_id,
                actor_id=caller.user_id,
                chat_id=chat_id,
                data=to_builtins(message),
            ),
        )
        if unpinned is not None:
            await record(conn, unpinned_event(caller, chat_id, row.id))
    return message, True


async def message_history(
    ctx: AppContext, caller: AccessClaims, chat_id: int, message_id: int
) -> list[MessageEditOut]:
    """Previous versions, oldest first; the current version is the message itself."""
    async with ctx.engine.connect() as conn:
        await require_member(conn, caller, chat_id)
        row = await message_in_chat(conn, chat_id, message_id)
        if row.deleted_at is not None:
            return []  # the delete removed the rows too; this keeps the rule independent of that
        edits = (
            await conn.execute(
                sa.select(message_edits.c.previous_content, message_edits.c.edited_at)
                .where(message_edits.c.message_id == message_id)
                .order_by(message_edits.c.id)
            )
        ).all()
    return [message_edit_out(edit) for edit in edits]


async def list_replies(
    ctx: AppContext, caller: AccessClaims, chat_id: int, message_id: int, *, limit: int, after: int | None
) -> tuple[list[MessageOut], bool]:
    """Messages replying to ``message_id``, ascending seq, paged forward by ``after``."""
    async with ctx.engine.connect() as conn:
        await require_member(conn, caller, chat_id)
        await message_in_chat(conn, chat_id, message_id)
        # Replies always live in the parent's chat (send checks it); the chat filter keeps that explicit.
        query = (
            sa.select(*MESSAGE_COLUMNS)
            .where(messages.c.chat_id == chat_id, messages.c.reply_to == message_id)
            .order_by(messages.c.seq)
            .limit(limit + 1)
        )
        if after is not None:
            query = query.where(messages.c.seq > after)
        rows = (await conn.execute(query)).all()
        items = [message_out(row) for row in rows[:limit]]
        await decorate(conn, items)
    return items, len(rows) > limit
