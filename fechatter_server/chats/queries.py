"""Reads shared by the chat and message services."""

from __future__ import annotations

from typing import Any

from fechatter_core.db.sql import Connection, Sql
from fechatter_core.errors import ApiError, conflict, forbidden, not_found
from fechatter_core.security import AccessClaims
from fechatter_server.mentions.queries import unread_mentions_sql
from fechatter_server.messages.decorate import files_of
from fechatter_server.reads.queries import unread_count_sql

# One row per chat of the caller, with everything the chat shape needs. Unread comes from the one rule
# in reads/queries.py (NULL for a non-member viewing a public channel, hence the COALESCE).
CHAT_ROWS = (
    """
    SELECT c.id, c.workspace_id, c.name, c.chat_type, c.description, c.owner_id, c.last_seq, c.created_at,
           c.last_message_at, c.archived_at,
           (SELECT array_agg(m.user_id ORDER BY m.user_id) FROM chat_members m WHERE m.chat_id = c.id)
               AS member_ids,
           COALESCE(__UNREAD__, 0) AS unread_count,
           COALESCE(__MENTIONS__, 0) AS unread_mentions,
           lm.id AS lm_id, lm.seq AS lm_seq, lm.sender_id AS lm_sender_id, lm.content AS lm_content,
           lm.reply_to AS lm_reply_to, lm.idempotency_key AS lm_idempotency_key,
           lm.created_at AS lm_created_at, lm.edited_at AS lm_edited_at, lm.deleted_at AS lm_deleted_at,
           lm.reply_count AS lm_reply_count,
           __FILES__ AS lm_files
    FROM chats c
    LEFT JOIN chat_members me ON me.chat_id = c.id AND me.user_id = :user_id
    LEFT JOIN LATERAL (
        SELECT * FROM messages x WHERE x.chat_id = c.id ORDER BY x.seq DESC LIMIT 1
    ) lm ON true
    WHERE c.workspace_id = :workspace_id AND {where}
    ORDER BY COALESCE(c.last_message_at, c.created_at) DESC, c.id DESC
    """.replace("__UNREAD__", unread_count_sql("me"))
    .replace("__MENTIONS__", unread_mentions_sql("me"))
    .replace("__FILES__", files_of("lm"))
)


def chat_rows_query(where: str) -> Sql:
    return Sql(CHAT_ROWS.format(where=where))


# The chats of the caller, one chat by id, and the public channels of the workspace.
MY_CHAT_ROWS = chat_rows_query("me.user_id IS NOT NULL")
ONE_CHAT_ROW = chat_rows_query("c.id = :chat_id")
PUBLIC_CHANNEL_ROWS = chat_rows_query("c.chat_type = 'PublicChannel'")


# The caller's membership of a chat of their workspace: no row when the chat is not in the workspace, a NULL
# role when the caller is not a member. ``MEMBERSHIP_SQL`` is also a subquery of reads that check it in the
# same round trip (the history page).
MEMBERSHIP_SQL = """
    SELECT c.id, c.chat_type, c.archived_at, cm.role, cm.last_read_seq
    FROM chats c LEFT JOIN chat_members cm ON cm.chat_id = c.id AND cm.user_id = :user_id
    WHERE c.id = :chat_id AND c.workspace_id = :workspace_id
"""
_MEMBERSHIP = Sql(MEMBERSHIP_SQL)


def check_member(row: Any) -> Any:
    """A membership row as ``MEMBERSHIP_SQL`` gives it (None: no row): 404 when the chat is not in the
    caller's workspace, 403 when they are not a member."""
    if row is None:
        raise not_found("Chat not found")
    if row.role is None:
        raise forbidden("You are not a member of this chat")
    return row


async def require_member(conn: Connection, caller: AccessClaims, chat_id: int) -> Any:
    """The caller's membership row; 404 when the chat is not in their workspace, 403 when not a member."""
    row = await _MEMBERSHIP.one_or_none(
        conn, chat_id=chat_id, user_id=caller.user_id, workspace_id=caller.workspace_id
    )
    return check_member(row)


def archived_error() -> ApiError:
    return conflict("conflict", "chat is archived")


def refuse_if_archived(chat: Any) -> None:
    """An archived chat stays readable; sends, edits, reactions, pins and new members are refused (409)."""
    if chat.archived_at is not None:
        raise archived_error()
