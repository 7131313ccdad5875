"""The search query language of API.md, parsed once into a value every engine understands.

``q`` is words, ``"quoted phrases"`` and filters: ``from:<user_id>``, ``in:<chat_id>``,
``before:YYYY-MM-DD``, ``after:YYYY-MM-DD`` and ``has:file``. A word that merely contains a colon (say a
URL) is a word. ``from:`` and ``in:`` may repeat (any of the given users or chats); the others may appear
once. ``before:D`` keeps messages sent before day D begins (UTC) and ``after:D`` those sent after day D ends,
so neither includes D itself (as in Slack).

The parser is pure and raises nothing but :class:`~fechatter_core.errors.ApiError` ``validation_error`` on
field ``q``; every cap (length, words, filters) comes from the settings.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from fechatter_core.errors import ApiError, validation_error
from fechatter_core.settings import SearchSettings

FIELD = "q"
_MAX_ID = 2**62
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ID = re.compile(r"[0-9]{1,19}")
_FILTER_KEYS = ("from", "in", "before", "after", "has")


@dataclass(frozen=True)
class ParsedQuery:
    terms: tuple[str, ...] = ()  # single words, in the order given, without duplicates
    phrases: tuple[str, ...] = ()  # quoted text, inner spaces kept
    senders: tuple[int, ...] = ()  # from:
    chats: tuple[int, ...] = ()  # in:
    before: datetime | None = None  # created_at < before
    after: datetime | None = None  # created_at >= after
    has_file: bool = False

    @property
    def texts(self) -> tuple[str, ...]:
        """Every text a message must contain (words and phrases), each matched case-insensitively."""
        return self.terms + self.phrases


def _error(message: str) -> ApiError:
    return validation_error(message, FIELD)


def _is_forbidden_char(ch: str) -> bool:
    # Control characters (NUL above all, which PostgreSQL text cannot hold) have no place in a query;
    # tabs and newlines are just spaces.
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cs")


def _tokens(q: str) -> list[tuple[str, bool]]:
    """Split into (text, quoted) tokens. An unclosed quote runs to the end of the query."""
    tokens: list[tuple[str, bool]] = []
    i, n = 0, len(q)
    while i < n:
        ch = q[i]
        if ch.isspace():
            i += 1
            continue
        if ch == '"':
            end = q.find('"', i + 1)
            if end < 0:
                end = n
            tokens.append((" ".join(q[i + 1 : end].split()), True))
            i = end + 1
            continue
        j = i
        while j < n and not q[j].isspace() and q[j] != '"':
            j += 1
        tokens.append((q[i:j], False))
        i = j
    return tokens


def _parse_id(key: str, value: str) -> int:
    if not _ID.fullmatch(value) or not 1 <= int(value) <= _MAX_ID:
        raise _error(f"{key}: takes a positive integer id, got {value[:40]!r}")
    return int(value)


def _parse_day(key: str, value: str) -> date:
    if not _DATE.fullmatch(value):
        raise _error(f"{key}: takes a date as YYYY-MM-DD, got {value[:40]!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _error(f"{key}: {value} is not a calendar date") from None


def _start_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def parse_query(q: str, settings: SearchSettings) -> ParsedQuery:
    """Parse ``q``; raises a 400 ``validation_error`` on ``q`` for anything it cannot honour."""
    text = q.strip()
    if not text:
        raise _error("q must not be empty")
    if len(text) > settings.query_max_chars:
        raise _error(f"q is longer than {settings.query_max_chars} characters")
    if any(_is_forbidden_char(ch) for ch in text):
        raise _error("q must not contain control characters")

    terms: list[str] = []
    phrases: list[str] = []
    senders: list[int] = []
    chats: list[int] = []
    once: dict[str, str] = {}
    filters = 0
    for token, quoted in _tokens(text):
        if quoted:
            if token and token.casefold() not in (p.casefold() for p in phrases):
                phrases.append(token)
            continue
        key, sep, value = token.partition(":")
        key = key.lower()
        if sep and key in _FILTER_KEYS:
            filters += 1
            if filters > settings.query_max_filters:
                raise _error(f"q has more than {settings.query_max_filters} filters")
            if not value:
                raise _error(f"{key}: needs a value")
            if key == "from":
                senders.append(_parse_id(key, value))
            elif key == "in":
                chats.append(_parse_id(key, value))
            else:
                if key in once:
                    raise _error(f"{key}: may appear only once")
                once[key] = value
            continue
        if token.casefold() not in (t.casefold() for t in terms):
            terms.append(token)

    if len(terms) + len(phrases) > settings.query_max_terms:
        raise _error(f"q has more than {settings.query_max_terms} words and phrases")

    before = after = None
    if "before" in once:
        before = _start_of(_parse_day("before", once["before"]))
    if "after" in once:
        day = _parse_day("after", once["after"])
        if day == date.max:
            raise _error("after: no message can be sent after 9999-12-31")
        after = _start_of(day + timedelta(days=1))
    has_file = False
    if "has" in once:
        if once["has"].lower() != "file":
            raise _error(f"has: supports only has:file, got {once['has'][:40]!r}")
        has_file = True

    if not terms and not phrases and filters == 0:
        raise _error("q has nothing to search for")
    return ParsedQuery(
        terms=tuple(terms),
        phrases=tuple(phrases),
        senders=tuple(dict.fromkeys(senders)),
        chats=tuple(dict.fromkeys(chats)),
        before=before,
        after=after,
        has_file=has_file,
    )
