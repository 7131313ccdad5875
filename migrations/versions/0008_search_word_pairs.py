"""Message search: every pair of adjacent words as one token, so a quoted phrase is one index lookup.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

A phrase such as ``"release build"`` was found through ``search_tsv``: the GIN index intersected the lists
of its two words, and for common words those lists cover a large share of the table (on the benchmark's
1,000,000 messages, 227,000 entries decoded for a phrase that 1,727 of the caller's messages hold).
``search_pairs`` holds each pair of adjacent words of the lowercased text as one token (``release_build``;
words are runs of letters and digits, whatever separates them, underscores included), so the phrase is the
short list of its pair. The words in a row and the exact text are still checked on what that list finds
(fechatter_server/search/postgres.py). A phrase finds the same messages as before; the few where its exact
text starts inside a longer word ("within the box" for "in the box", whose stop words the word check
drops), or where its words are in a row at one place and its exact text at another, now come with the
matches inside words rather than before them.

The pairs are taken by regular expressions in two passes, each pairing words 1-2, 3-4, ... of the text,
the second after dropping the first word (2-3, 4-5, ...); a word left without a partner at the end is kept
as a token of its own, which no pair query looks for. Words of 200 characters or more (a pasted key or
blob) are left out, so no token reaches PostgreSQL's 2 KiB limit per lexeme; a phrase with such a word is
found the way it was before. Adding the column rewrites the messages table once
(about 30 s per million messages on two cores), as migration 0005 did; the services start after it.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_PAIR = "'([[:alnum:]]+)[^[:alnum:]]+([[:alnum:]]+)', '\\1_\\2 ', 'g'"
# The pairs of a text prepared by fechatter_word_pairs; ``t`` is used twice, so it is a parameter of its
# own function rather than an expression computed twice.
PAIRS_OF_WORDS = f"""
CREATE FUNCTION fechatter_pairs_of_words(t text) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN array_to_tsvector(array_remove(regexp_split_to_array(
    regexp_replace(t, {_PAIR})
    || ' '
    || regexp_replace(regexp_replace(t, '^[^[:alnum:]]*[[:alnum:]]+', ''), {_PAIR}),
    '[^[:alnum:]_]+'), ''))
"""
# Lowercased; underscores become spaces ('_' joins the two words of a token, so none may be left from the
# text); words of 200 characters or more are dropped, so that no token reaches PostgreSQL's limit of 2 KiB
# per lexeme (array_to_tsvector refuses one, which would refuse the message).
WORD_PAIRS = """
CREATE FUNCTION fechatter_word_pairs(content text) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN fechatter_pairs_of_words(
    regexp_replace(translate(lower(content), '_', ' '), '[[:alnum:]]{200,}', ' ', 'g'))
"""


def upgrade() -> None:
    op.execute(PAIRS_OF_WORDS)
    op.execute(WORD_PAIRS)
    op.execute(
        "ALTER TABLE messages ADD COLUMN search_pairs tsvector"
        " GENERATED ALWAYS AS (fechatter_word_pairs(content)) STORED"
    )
    op.execute("CREATE INDEX messages_search_pairs_idx ON messages USING gin (search_pairs)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS messages_search_pairs_idx")
    op.execute("ALTER TABLE messages DROP COLUMN IF EXISTS search_pairs")
    op.execute("DROP FUNCTION IF EXISTS fechatter_word_pairs(text)")
    op.execute("DROP FUNCTION IF EXISTS fechatter_pairs_of_words(text)")
