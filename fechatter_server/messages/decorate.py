"""Files, reactions and mentions of a page of messages, in one query each, whatever the page size.

Every answer that carries messages (list, send, edit, delete, replies, a chat's last message, mentions,
pins, and the events of those changes) passes its messages through ``decorate`` so the shape is the same
everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by

from fechatter_core.db.schema import message_mentions, message_reactions
from fechatter_server.files.queries import attach_files
from fechatter_server.views import MessageOut, ReactionOut

_REACTIONS = (
    sa.select(
        message_reactions.c.message_id,
        message_reactions.c.emoji,
        sa.func.array_agg(
            aggregate_order_by(message_reactions.c.user_id, message_reactions.c.created_at)
        ).label("user_ids"),
        sa.func.min(message_reactions.c.created_at).label("first_used"),
    )
    .group_by(message_reactions.c.message_id, message_reactions.c.emoji)
    .order_by(message_reactions.c.message_id, sa.text("first_used"), message_reactions.c.emoji)
)

_MENTIONS = sa.select(message_mentions.c.message_id, message_mentions.c.user_id).order_by(
    message_mentions.c.message_id, message_mentions.c.user_id
)


async def decorate(conn: Any, items: Sequence[MessageOut], *, files: bool = True) -> None:
    """Fill ``files`` (in their order; skipped with ``files=False`` when the caller's query already carried
    them), ``reactions`` (by first use) and ``mentions`` (user ids, ascending) of ``items`` in place."""
    ids = sorted({m.id for m in items if not m.deleted})
    if not ids:
        return
    if files:
        await attach_files(conn, items)
    reactions: dict[int, list[ReactionOut]] = defaultdict(list)
    for row in await conn.execute(_REACTIONS.where(message_reactions.c.message_id.in_(ids))):
        users = list(row.user_ids)
        reactions[row.message_id].append(ReactionOut(emoji=row.emoji, count=len(users), user_ids=users))
    mentions: dict[int, list[int]] = defaultdict(list)
    for row in await conn.execute(_MENTIONS.where(message_mentions.c.message_id.in_(ids))):
        mentions[row.message_id].append(row.user_id)
    for message in items:
        message.reactions = reactions.get(message.id, [])
        message.mentions = mentions.get(message.id, [])
