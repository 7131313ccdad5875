"""Which strings are reactions (pure: no database).

Two forms are accepted:
- a short name between colons, as chat clients type them: ``:+1:``, ``:tada:``, ``:white_check_mark:``
  (lowercase letters, digits, ``_``, ``+`` and ``-``; up to 62 characters between the colons);
- Unicode emoji, including sequences joined by U+200D, with skin tones, variation selectors, keycaps
  (``1️⃣``) and flags: no letters, spaces, control or private characters, at least one character outside
  ASCII, and from ASCII only the digits, ``#`` and ``*`` of keycaps.
Both are at most 64 characters. Nothing is translated: ``:+1:`` and ``👍`` are two different reactions.
"""

from __future__ import annotations

import re
import unicodedata

MAX_CHARS = 64
_SHORT_NAME = re.compile(r":[a-z0-9_+\-]{1,62}:")
_KEYCAP_ASCII = frozenset("0123456789#*")
_ZWJ = "\u200d"


def _tag(char: str) -> bool:
    return "\U000e0020" <= char <= "\U000e007f"  # subdivision flags (England, Scotland, Wales)


def emoji_problem(emoji: str) -> str | None:
    """Why ``emoji`` is not a reaction, or None when it is one."""
    if not 1 <= len(emoji) <= MAX_CHARS:
        return f"emoji must be 1-{MAX_CHARS} characters"
    if emoji.startswith(":"):
        if _SHORT_NAME.fullmatch(emoji):
            return None
        return "a short name is :name: with lowercase letters, digits, _, + or -"
    if not any(ord(c) > 127 for c in emoji):
        return "emoji must be an emoji or a :short_name:"
    for char in emoji:
        if ord(char) < 128:
            if char not in _KEYCAP_ASCII:
                return "emoji must not contain letters, spaces or punctuation"
            continue
        category = unicodedata.category(char)
        if category[0] in "LZ" or category in {"Cc", "Cs", "Co", "Cn"}:
            return "emoji must not contain letters, spaces or control characters"
        if category == "Cf" and char != _ZWJ and not _tag(char):
            return "emoji must not contain invisible formatting characters"
    return None
