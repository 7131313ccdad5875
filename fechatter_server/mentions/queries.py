"""The unread-mention rule, written once: a mention of the member in a message after their read position,
of a message that is not deleted (a delete also removes its mention rows; the check keeps the rule
independent of that). The sender is never mentioned, so no sender test is needed here."""

from __future__ import annotations

UNREAD_MENTIONS_SQL = """
    (SELECT count(*) FROM message_mentions mm JOIN messages mmsg ON mmsg.id = mm.message_id
     WHERE mm.user_id = {member}.user_id AND mm.chat_id = {member}.chat_id
       AND mm.seq > {member}.last_read_seq AND mmsg.deleted_at IS NULL)
"""


def unread_mentions_sql(member_alias: str) -> str:
    """A correlated count for a query where ``member_alias`` names a ``chat_members`` row (NULL when the
    caller is no member: then the count is 0)."""
    if not member_alias.isidentifier():
        raise ValueError(f"not an SQL identifier: {member_alias!r}")
    return UNREAD_MENTIONS_SQL.format(member=member_alias)
