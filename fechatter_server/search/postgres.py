"""Search on PostgreSQL: the messages table is the index, so a message is found once its send returns.

Matching: every word and phrase must occur in the content, case-insensitively, as a substring
(``content ILIKE '%text%'``, served by the trigram GIN index of migration 0004). That one rule finds whole
words, prefixes, substrings and text written without spaces (Chinese, Japanese). A word may also match by
its English stem (``search_tsv @@ plainto_tsquery('english', word)``; ``search_tsv`` is the stored vector
of migration 0005, with its own GIN index), so "study" finds "studies". pg_trgm needs three characters to
use its index, so a two-character CJK text is matched through the CJK character pairs ``search_tsv`` also
holds (the same messages as the substring rule, found by the index); other one- or two-character terms are
checked by scanning the messages that the other conditions leave. A quoted phrase of ASCII words is
looked up through ``search_pairs`` (migration 0008: every pair of adjacent words as one token), whose list
for the pair is short even when both words are in most messages.

Order: messages where every word occurs as a word (or its stem) and every phrase as words in a row come
first; messages that match only through a substring (``ploy`` inside "deploy") follow them, newest
first. The newest ``rank_window`` word matches are ranked by ``ts_rank`` of the words (stems and prefixes)
over ``search_tsv``, newest first among equals. The word matches are answered from ``search_tsv`` alone, which
costs a fraction of a substring test per message, and the substring search runs only when the word matches
do not fill the requested page: a common word stays cheap.

Membership is read at the start of every search and given to the search statement as a list of chats, so
the planner knows how large a share of the messages they hold; a member removed a moment ago finds nothing
more. Deletion is a condition of the search statement: a deleted message is never returned.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, TSQUERY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fechatter_core.db.schema import MESSAGE_COLUMNS, chat_members, chats, message_files, messages
from fechatter_core.security import AccessClaims
from fechatter_server.messages.decorate import decorate
from fechatter_server.search.engine import SearchPage
from fechatter_server.search.highlight import highlight
from fechatter_server.search.query import ParsedQuery
from fechatter_server.views import SearchHitOut, message_out

_WORD = re.compile(r"\w+")
_ENGLISH = sa.text("'english'::regconfig")
_SIMPLE = sa.text("'simple'::regconfig")
# The characters whose adjacent pairs search_tsv holds: the class of fechatter_cjk_bigrams (migration 0005).
_CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_PAIR = re.compile(f"[{_CJK_CLASS}]{{2}}")
_CJK = re.compile(f"[{_CJK_CLASS}]")

_COLUMNS = MESSAGE_COLUMNS


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's own characters escaped (escape character: backslash)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


MAX_RANKED_WORD_BYTES = 1024


def prefix_tsquery(texts: tuple[str, ...]) -> str | None:
    """``'w1':* | 'w2':*`` for ranking. Words are ``\\w+`` runs, so they hold no quote or backslash and
    the literal cannot be malformed; it is cast to tsquery as is, never parsed as query syntax."""
    # PostgreSQL refuses a tsquery word of 2 KiB or more; a word that long only ranks, so it is left out.
    words = dict.fromkeys(
        w.lower() for text in texts for w in _WORD.findall(text) if len(w.encode()) <= MAX_RANKED_WORD_BYTES
    )
    if not words:
        return None
    return " | ".join(f"'{w}':*" for w in words)


# Words of 200 characters or more are not paired (migration 0008), so a phrase holding one is not either.
_PAIRABLE = re.compile(r"[a-z0-9]{1,199}(?: [a-z0-9]{1,199})+")


def pairs_tsquery(text: str) -> str | None:
    """``'release_build':*`` for the phrase "release build": the tokens of ``search_pairs`` (migration 0008)
    that every message holding the phrase as words in a row has. The last pair is a prefix (the phrase
    "release build" is in "release builds"). None when the phrase is not two or more ASCII words (each under
    200 characters) separated by single spaces (its exact text could then fall across other word
    boundaries)."""
    lowered = text.lower()
    # ASCII before lowering too: a few other letters lower to ASCII ones (the Kelvin sign to "k").
    if not text.isascii() or not _PAIRABLE.fullmatch(lowered):
        return None
    words = lowered.split(" ")
    pairs = [f"'{a}_{b}'" for a, b in itertools.pairwise(words)]
    pairs[-1] += ":*"
    return " & ".join(pairs)


@dataclass(frozen=True)
class TextMatch:
    """How one word or phrase of a query is matched: ``full`` is the rule of the module docstring, ``word``
    the part of it that the stored vector answers (whole words, stems, phrases as words in a row)."""

    full: sa.ColumnElement[bool]
    word: sa.ColumnElement[bool]

    @property
    def word_is_full(self) -> bool:
        return self.word is self.full


def text_match(text: str, *, is_term: bool, has_lexemes: bool) -> TextMatch:
    """``has_lexemes``: the English parser keeps a word of ``text`` (it is not all stop words or symbols)."""
    if _CJK_PAIR.fullmatch(text) and text.isalpha():  # letters: what the text parser keeps as one word
        # Exactly the messages where these two characters are adjacent, as the substring rule would find.
        pair = messages.c.search_tsv.op("@@")(sa.func.plainto_tsquery(_SIMPLE, text))
        return TextMatch(full=pair, word=pair)
    substring = messages.c.content.ilike(like_pattern(text), escape="\\")
    if not has_lexemes or _CJK.search(text):
        # No English word to look up (CJK runs are one token to the English parser): substrings only.
        return TextMatch(full=substring, word=substring)
    if is_term:
        stemmed = messages.c.search_tsv.op("@@")(sa.func.plainto_tsquery(_ENGLISH, text))
        return TextMatch(full=sa.or_(substring, stemmed), word=stemmed)
    # A phrase: its words in a row in the vector, then the exact text (the vector holds stems). The text is
    # checked on the messages the vector finds: written on ``content || ''`` so that the planner does not
    # also intersect the trigram index, whose lists for common words cover much of the table.
    phrase = sa.func.phraseto_tsquery(_ENGLISH, text)
    exact_text = (messages.c.content + sa.literal("")).ilike(like_pattern(text), escape="\\")
    pairs = pairs_tsquery(text)
    if pairs is None:
        return TextMatch(full=substring, word=sa.and_(messages.c.search_tsv.op("@@")(phrase), exact_text))
    # Its pairs of adjacent words find the few messages that hold them (one short list per pair, where the
    # words' own lists are long); the words in a row and the exact text are then checked on those alone.
    # ``ts_match_vq`` is the @@ operator as a function, which the planner cannot send to the index.
    candidates = messages.c.search_pairs.op("@@")(sa.cast(pairs, TSQUERY))
    in_a_row = sa.func.ts_match_vq(messages.c.search_tsv, phrase)
    return TextMatch(full=substring, word=sa.and_(candidates, in_a_row, exact_text))


def filter_conditions(
    member_chats: list[int], query: ParsedQuery, chat_id: int | None
) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [
        messages.c.chat_id == sa.any_(sa.literal(member_chats, ARRAY(sa.BigInteger))),
        messages.c.deleted_at.is_(None),
    ]
    if chat_id is not None:
        where.append(messages.c.chat_id == chat_id)
    if query.chats:
        where.append(messages.c.chat_id.in_(query.chats))
    if query.senders:
        where.append(messages.c.sender_id.in_(query.senders))
    if query.before is not None:
        where.append(messages.c.created_at < query.before)
    if query.after is not None:
        where.append(messages.c.created_at >= query.after)
    if query.has_file:
        where.append(sa.exists().where(message_files.c.message_id == messages.c.id))
    return where


async def member_chat_ids(conn: AsyncConnection, caller: AccessClaims) -> list[int]:
    rows = await conn.scalars(
        sa.select(chat_members.c.chat_id)
        .join(chats, chats.c.id == chat_members.c.chat_id)
        .where(chat_members.c.user_id == caller.user_id, chats.c.workspace_id == caller.workspace_id)
    )
    return list(rows)


async def lexeme_flags(conn: AsyncConnection, texts: tuple[str, ...]) -> list[bool]:
    """For each text, whether the English parser keeps a word of it (stop words and symbols it drops)."""
    if not texts:
        return []
    result = await conn.execute(
        sa.text(
            "SELECT numnode(plainto_tsquery('english'::regconfig, t)) > 0"
            " FROM unnest(CAST(:texts AS text[])) WITH ORDINALITY AS q(t, n) ORDER BY n"
        ),
        {"texts": list(texts)},
    )
    return list(result.scalars())


def rank_expression(query: ParsedQuery) -> sa.ColumnElement[Any]:
    """``ts_rank`` over the stored vector of the words as prefixes or stems (no message text is parsed)."""
    prefixes = prefix_tsquery(query.texts)
    if prefixes is None:
        return sa.literal(0.0)
    rank_query: sa.ColumnElement[Any] = sa.cast(prefixes, TSQUERY)
    stemmed_text = " ".join(query.terms)
    if stemmed_text:
        rank_query = rank_query.op("||")(sa.func.plainto_tsquery(_ENGLISH, stemmed_text))
    return sa.func.ts_rank(messages.c.search_tsv, rank_query)


def _newest(where: list[sa.ColumnElement[bool]], rank: sa.ColumnElement[Any], window: Any) -> sa.Select[Any]:
    """The newest ``window`` messages matching ``where``, with their rank."""
    return sa.select(*_COLUMNS, rank.label("rank")).where(*where).order_by(messages.c.id.desc()).limit(window)


def ranked_page(
    filters: list[sa.ColumnElement[bool]],
    matches: list[TextMatch],
    rank: sa.ColumnElement[Any],
    *,
    window: int,
    limit: int,
    offset: int,
) -> sa.Select[Any]:
    """One page (``limit`` + 1 rows from ``offset``) of the order of the module docstring: the newest
    ``window`` word matches by rank, then substring-only matches by rank, ``window`` messages in all."""
    words = _newest([*filters, *(m.word for m in matches)], rank, window).cte("word_matches")
    groups: list[sa.Select[Any]] = [sa.select(words, sa.literal(0).label("match_group"))]
    if not all(m.word_is_full for m in matches):
        # Substring matches are looked for only when the word matches leave room on the requested page.
        found = sa.select(sa.func.count()).select_from(words).scalar_subquery()
        room = sa.func.greatest(sa.func.least(window - found, offset + limit + 1 - found), 0)
        not_words = sa.not_(sa.and_(*(m.word for m in matches)))
        # Newest first, not by rank: how many of them are fetched depends on the page asked for, and a
        # ranking over a window that changes from page to page would repeat and skip messages across pages.
        substrings = _newest(
            [*filters, *(m.full for m in matches), not_words], sa.literal(0.0), room
        ).subquery()
        groups.append(sa.select(substrings, sa.literal(1).label("match_group")))
    ranked = sa.union_all(*groups).subquery("ranked")
    return (
        sa.select(ranked)
        .order_by(ranked.c.match_group, ranked.c.rank.desc(), ranked.c.id.desc())
        .limit(limit + 1)
        .offset(offset)
    )


class PostgresSearch:
    name = "postgres"

    def __init__(self, engine: AsyncEngine, *, snippet_context: int, rank_window: int) -> None:
        self._engine = engine
        self._context = snippet_context
        self._rank_window = rank_window

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def search(
        self, caller: AccessClaims, query: ParsedQuery, *, chat_id: int | None, limit: int, offset: int
    ) -> SearchPage:
        async with self._engine.connect() as conn:
            # The driver prepares statements, and after a few runs PostgreSQL may switch to a generic plan
            # that cannot see the LIKE pattern or the chats: a two-character term would then scan the whole
            # trigram index.
            await conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
            # Parallel workers start in milliseconds each; for a query that stops at a few hundred rows that
            # is most of its time on a small machine (measured: 130 ms with them, 60 ms without).
            await conn.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))
            member_chats = await member_chat_ids(conn, caller)
            if not member_chats:
                return SearchPage(hits=[], has_more=False)
            flags = await lexeme_flags(conn, query.texts)
            matches = [
                text_match(text, is_term=text in query.terms, has_lexemes=flag)
                for text, flag in zip(query.texts, flags, strict=True)
            ]
            statement = ranked_page(
                filter_conditions(member_chats, query, chat_id),
                matches,
                rank_expression(query),
                window=self._rank_window,
                limit=limit,
                offset=offset,
            )
            rows = (await conn.execute(statement)).all()
            hits = [
                SearchHitOut(
                    message=message_out(row), highlight=highlight(row.content, query.texts, self._context)
                )
                for row in rows[:limit]
            ]
            await decorate(conn, [hit.message for hit in hits])
        return SearchPage(hits=hits, has_more=len(rows) > limit)
