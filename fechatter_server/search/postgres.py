"""Search on PostgreSQL: the messages table is the index, so a message is found once its send returns.

Matching: every word and phrase must occur in the content, case-insensitively, as a substring
(``content ILIKE '%text%'``, served by the trigram GIN index of migration 0004). That one rule finds whole
words, prefixes, substrings and text written without spaces (Chinese, Japanese). A word may also match by
its English stem (``search_tsv @@ plainto_tsquery('english', word)``; ``search_tsv`` is the stored vector
of migration 0005, with its own GIN index), so "study" finds "studies". pg_trgm needs three characters to
use its index, so a two-character CJK text is matched through the CJK character pairs ``search_tsv`` also
holds (the same messages as the substring rule, found by the index); other one- or two-character terms are
checked by scanning the messages that the other conditions leave.

Ranking: ``ts_rank`` of the words as prefixes over the ``simple`` text vector plus ``ts_rank`` of the
stemmed words, newest first among equals. To keep a very common word cheap, only the ``rank_window``
newest matches are ranked.

Membership, workspace and deletion are conditions of the same statement: a member removed a moment ago
finds nothing more, and a deleted message is never returned.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, TSQUERY
from sqlalchemy.ext.asyncio import AsyncEngine

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
_CJK_PAIR = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]{2}")

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


def _member_chats(caller: AccessClaims) -> sa.ColumnElement[Any]:
    """The caller's chats as one array, computed once at the start of the statement. As an array the planner
    can combine the ``chat_id`` index with the text indexes (a bitmap AND) when the caller's chats hold a
    small share of the messages; as an ``IN (subquery)`` it walked the newest messages of every chat and
    dropped the ones of other chats afterwards."""
    ids = (
        sa.select(sa.func.array_agg(chat_members.c.chat_id))
        .join(chats, chats.c.id == chat_members.c.chat_id)
        .where(chat_members.c.user_id == caller.user_id, chats.c.workspace_id == caller.workspace_id)
        .scalar_subquery()
    )
    return sa.any_(sa.cast(ids, ARRAY(sa.BigInteger)))


def conditions(caller: AccessClaims, query: ParsedQuery, chat_id: int | None) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [
        messages.c.chat_id == _member_chats(caller),
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
    for text in query.texts:
        if _CJK_PAIR.fullmatch(text) and text.isalpha():  # letters: what the text parser keeps as one word
            # Exactly the messages where these two characters are adjacent, as the substring rule would find.
            where.append(messages.c.search_tsv.op("@@")(sa.func.plainto_tsquery(_SIMPLE, text)))
            continue
        match = messages.c.content.ilike(like_pattern(text), escape="\\")
        if text in query.terms and _WORD.search(text):
            stemmed = messages.c.search_tsv.op("@@")(sa.func.plainto_tsquery(_ENGLISH, text))
            match = sa.or_(match, stemmed)
        where.append(match)
    return where


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
        candidates = (
            sa.select(*_COLUMNS)
            .where(*conditions(caller, query, chat_id))
            .order_by(messages.c.id.desc())
            .limit(self._rank_window)
            .subquery("candidates")
        )
        rank: sa.ColumnElement[Any] = sa.literal(0.0)
        prefixes = prefix_tsquery(query.texts)
        if prefixes is not None:
            rank = sa.func.ts_rank(
                sa.func.to_tsvector(_SIMPLE, candidates.c.content), sa.cast(prefixes, TSQUERY)
            )
            stemmed_text = " ".join(query.terms)
            if stemmed_text:
                rank = rank + sa.func.ts_rank(
                    sa.func.to_tsvector(_ENGLISH, candidates.c.content),
                    sa.func.plainto_tsquery(_ENGLISH, stemmed_text),
                )
        statement = (
            sa.select(candidates, rank.label("rank"))
            .order_by(sa.desc("rank"), candidates.c.id.desc())
            .limit(limit + 1)
            .offset(offset)
        )
        async with self._engine.connect() as conn:
            # The driver prepares statements, and after a few runs PostgreSQL may switch to a generic plan
            # that cannot see the LIKE pattern: a two-character term would then scan the whole trigram index.
            await conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
            # Parallel workers start in milliseconds each; for a query that stops at a few hundred rows that
            # is most of its time on a small machine (measured: 130 ms with them, 60 ms without).
            await conn.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))
            rows = (await conn.execute(statement)).all()
            hits = [
                SearchHitOut(
                    message=message_out(row), highlight=highlight(row.content, query.texts, self._context)
                )
                for row in rows[:limit]
            ]
            await decorate(conn, [hit.message for hit in hits])
        return SearchPage(hits=hits, has_more=len(rows) > limit)
