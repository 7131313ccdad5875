"""Files, reactions and mentions of a page of messages, in one query whatever the page size.

Every answer that carries messages (list, send, edit, delete, replies, a chat's last message, mentions,
pins, and the events of those changes) passes its messages through ``decorate`` so the shape is the same
everywhere. ``DECORATION`` is the one definition of what decorates a message; a query that reads messages
anyway (the history page) selects it alongside and hands its columns to ``decorate_with``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import msgspec

from fechatter_core.db.sql import Connection, Sql
from fechatter_server.views import MessageOut, ReactionOut, file_out

# The files of the message aliased ``__M__`` (a row of ``messages``), in their order, as JSON.
_FILES_OF = """
    CASE WHEN __M__.has_files THEN
      (SELECT json_agg(json_build_object(
                  'id', f.id, 'filename', f.filename, 'size', f.size, 'mime_type', f.mime_type,
                  'width', f.width, 'height', f.height, 'thumbnail_sha256', f.thumbnail_sha256)
              ORDER BY mf.position)
         FROM message_files mf JOIN files f ON f.id = mf.file_id
        WHERE mf.message_id = __M__.id)
    END"""
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def files_of(message_alias: str) -> str:
    """``_FILES_OF`` over the message aliased ``message_alias`` in the enclosing query."""
    if not _IDENTIFIER.fullmatch(message_alias):
        raise ValueError(f"not an SQL identifier: {message_alias!r}")
    return _FILES_OF.replace("__M__", message_alias)


# Columns over a message aliased ``m`` (a row of ``messages``): its files in their order, its reactions by
# first use (each with its users in the order they reacted) and its mentioned user ids, ascending. NULL when
# there are none. Each is looked up only when the message's flag (migration 0006) says it may have some: on a
# page of plain messages that is no lookup at all.
DECORATION = """
    __FILES__ AS deco_files,
    CASE WHEN m.has_reactions THEN
      (SELECT json_agg(json_build_object('emoji', r.emoji, 'user_ids', r.user_ids)
              ORDER BY r.first_used, r.emoji)
         FROM (SELECT x.emoji, array_agg(x.user_id ORDER BY x.created_at) AS user_ids,
                      min(x.created_at) AS first_used
                 FROM message_reactions x WHERE x.message_id = m.id GROUP BY x.emoji) r)
    END AS deco_reactions,
    CASE WHEN m.has_mentions THEN
      (SELECT array_agg(n.user_id ORDER BY n.user_id)
         FROM message_mentions n WHERE n.message_id = m.id)
    END AS deco_mentions
""".replace("__FILES__", files_of("m"))

_DECORATE = Sql(
    "SELECT m.id, __DECORATION__ FROM messages m WHERE m.id = ANY(CAST(:ids AS bigint[]))".replace(
        "__DECORATION__", DECORATION
    )
)
# What a message gone from the table (its chat deleted meanwhile) is decorated with: nothing.
_NO_DECORATION = SimpleNamespace(deco_files=None, deco_reactions=None, deco_mentions=None)


def _json(value: Any) -> Any:
    # The engine's connections hand json columns over as text (SQLAlchemy's codec decodes them itself).
    return msgspec.json.decode(value) if isinstance(value, str | bytes) else value


def decorate_with(
    message: MessageOut, deco_files: Any, deco_reactions: Any, deco_mentions: Any, *, files: bool = True
) -> None:
    """Fill ``message`` from the three ``DECORATION`` columns, given in their order (``files=False``: leave
    its files as they are). A deleted message shows none."""
    if message.deleted:
        return
    # Most messages have none of the three: those cost three assignments.
    if files:
        message.files = (
            [file_out(SimpleNamespace(**item)) for item in _json(deco_files)]
            if deco_files is not None
            else []
        )
    message.reactions = (
        [
            ReactionOut(emoji=r["emoji"], count=len(r["user_ids"]), user_ids=r["user_ids"])
            for r in _json(deco_reactions)
        ]
        if deco_reactions is not None
        else []
    )
    message.mentions = list(deco_mentions) if deco_mentions is not None else []


def apply_decoration(message: MessageOut, row: Any, *, files: bool = True) -> None:
    """Fill ``message`` from a row carrying the ``DECORATION`` columns. A deleted message shows none."""
    decorate_with(message, row.deco_files, row.deco_reactions, row.deco_mentions, files=files)


async def decorate(conn: Connection, items: Sequence[MessageOut], *, files: bool = True) -> None:
    """Fill ``files`` (in their order; skipped with ``files=False`` when the caller's query already carried
    them), ``reactions`` (by first use) and ``mentions`` (user ids, ascending) of ``items`` in place."""
    present = [m for m in items if not m.deleted]
    if not present:
        return
    rows = {row.id: row for row in await _DECORATE.all(conn, ids=sorted({m.id for m in present}))}
    for message in present:
        apply_decoration(message, rows.get(message.id, _NO_DECORATION), files=files)
