"""File reads shared by the files and message services: who may see a file, and whose files a message may
carry. (The files of messages come with their decoration: messages/decorate.py.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fechatter_core.db.schema import chat_members, files, message_files, messages
from fechatter_core.db.sql import Connection, Sql
from fechatter_core.security import AccessClaims

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


_OWN_FILES = Sql(
    """
    SELECT id FROM files
    WHERE id = ANY(CAST(:file_ids AS bigint[])) AND uploader_id = :user_id AND workspace_id = :workspace_id
    """
)
_FILE_IDS_OF = Sql("SELECT file_id FROM message_files WHERE message_id = :message_id ORDER BY position")


async def own_files(conn: Connection, caller: AccessClaims, file_ids: Sequence[int]) -> set[int]:
    """Those of ``file_ids`` the caller uploaded in the token's workspace."""
    if not file_ids:
        return set()
    rows = await _OWN_FILES.all(
        conn, file_ids=list(file_ids), user_id=caller.user_id, workspace_id=caller.workspace_id
    )
    return {row.id for row in rows}


async def file_ids_of(conn: Connection, message_id: int) -> list[int]:
    """The files of a message, in their order."""
    return [row.file_id for row in await _FILE_IDS_OF.all(conn, message_id=message_id)]
