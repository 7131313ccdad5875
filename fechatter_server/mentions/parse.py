"""Mention syntax, parsed from a message's text (pure: no database).

Users have a full name but no unique handle, so a mention names the user by id:
- ``<@123>``: the user with id 123 (what the web client inserts when someone is picked from the list);
- ``@everyone``: every member of the chat;
- ``@here``: every member, exactly like ``@everyone`` (only its ``mention_type`` differs): a mention is
  kept in the unread list, so one written for those around still reaches whoever was away when they
  come back, rather than depending on who had a connection open at that moment.
``@everyone`` and ``@here`` count only as whole words (``me@here.org`` and ``@hereafter`` mention nobody).
Who is actually mentioned (members only, never the sender) is decided by the caller with the chat's
members at hand: see ``resolve``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Ids are bounded like every id of the API, so a 30-digit "id" is text, not a mention.
_USER = re.compile(r"<@([1-9][0-9]{0,18})>")
_BROADCAST = re.compile(r"(?<![\w@.])@(everyone|here)(?![\w@])")
_MAX_ID = 2**62


@dataclass(frozen=True)
class Parsed:
    user_ids: frozenset[int] = field(default_factory=frozenset)
    everyone: bool = False
    here: bool = False

    @property
    def names_anyone(self) -> bool:
        return bool(self.user_ids or self.everyone or self.here)


def parse(content: str) -> Parsed:
    users = frozenset(int(m) for m in _USER.findall(content) if int(m) <= _MAX_ID)
    words = set(_BROADCAST.findall(content))
    return Parsed(user_ids=users, everyone="everyone" in words, here="here" in words)


def resolve(parsed: Parsed, members: set[int] | frozenset[int], sender_id: int) -> dict[int, str]:
    """Mentioned member -> mention_type. A member named by id is a ``user`` mention even when the text
    also says ``@everyone``; otherwise ``everyone`` wins over ``here``. Non-members and the sender are left
    out."""
    found: dict[int, str] = {}
    if parsed.everyone or parsed.here:
        kind = "everyone" if parsed.everyone else "here"
        found.update(dict.fromkeys(members, kind))
    for user_id in parsed.user_ids:
        if user_id in members:
            found[user_id] = "user"
    found.pop(sender_id, None)
    return found
