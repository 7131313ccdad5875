"""File reads shared by the files and message services: who may see a file, and the files of messages."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fechatter_core.db.schema import chat_members, files, message_files, messages
from fechatter_core.security import AccessClaims
from fechatter_server.views import FileOut, MessageOut, file_out

FILE_COLUMNS = (
    files.c.id,
    files.c.workspace_id,
    files.c.uploader_id,
    files.c.sha256,
    files.c.size,
    files.c.mime_type,
    files.c.filename,
    files.c.width,
    files.c.height,
    files.c.thumbnail_sha256,
)


async def readable_file(conn: AsyncConnection, caller: AccessClaims, file_id: int) -> Any:
    """The file row when the caller may read it: they uploaded it, or it is attached to a message (not
    deleted) of a chat they are a member of. Scoped to the token's workspace. None otherwise."""
    shared_with_caller = (
        sa.select(sa.literal(1))
        .select_from(message_files)
        .join(messages, messages.c.id == message_files.c.message_id)
        .join(
            chat_members,
            sa.and_(chat_members.c.chat_id == messages.c.chat_id, chat_members.c.user_id == caller.user_id),
        )
        .where(message_files.c.file_id == files.c.id, messages.c.deleted_at.is_(None))
        .exists()
    )
    return (
        await conn.execute(
            sa.select(*FILE_COLUMNS).where(
                files.c.id == file_id,
                files.c.workspace_id == caller.workspace_id,
                sa.or_(files.c.uploader_id == caller.user_id, shared_with_caller),
            )
        )
    ).one_or_none()


async def own_files(conn: AsyncConnection, caller: AccessClaims, file_ids: Sequence[int]) -> set[int]:
    """Those of ``file_ids`` the caller uploaded in the token's workspace."""
    if not file_ids:
        return set()
    rows = await conn.execute(
        sa.select(files.c.id).where(
            files.c.id.in_(list(file_ids)),
            files.c.uploader_id == caller.user_id,
            files.c.workspace_id == caller.workspace_id,
        )
    )
    return {row.id for row in rows}


async def file_ids_of(conn: AsyncConnection, message_id: int) -> list[int]:
    rows = await conn.execute(
        sa.select(message_files.c.file_id)
        .where(message_files.c.message_id == message_id)
        .order_by(message_files.c.position)
    )
    return [row.file_id for row in rows]


async def files_of_messages(conn: AsyncConnection, message_ids: Iterable[int]) -> dict[int, list[FileOut]]:
    """The files of each message, in their order; one query for any number of messages."""
    ids = sorted(set(message_ids))
    if not ids:
        return {}
    rows = await conn.execute(
        sa.select(message_files.c.message_id, *FILE_COLUMNS)
        .join(files, files.c.id == message_files.c.file_id)
        .where(message_files.c.message_id.in_(ids))
        .order_by(message_files.c.message_id, message_files.c.position)
    )
    found: dict[int, list[FileOut]] = {}
    for row in rows:
        found.setdefault(row.message_id, []).append(file_out(row))
    return found


async def attach_files(conn: AsyncConnection, items: Sequence[MessageOut | None]) -> None:
    """Fill ``files`` of each message in place (a deleted message shows none)."""
    present = [m for m in items if m is not None and not m.deleted]
    by_message = await files_of_messages(conn, (m.id for m in present))
    for message in present:
        message.files = by_message.get(message.id, [])
