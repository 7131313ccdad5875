"""Message search: a stored search vector with CJK bigrams, in place of a vector computed per row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Search conditions such as ``to_tsvector('english', content) @@ q`` are cheap where the GIN index answers
them, but the planner often walks the newest messages instead and then parsed every message it passed (tens
of microseconds each). ``search_tsv`` stores the parsed vector once per write, so checking a message costs
a comparison. It also holds every pair of adjacent CJK characters as a token (``北京的天气`` gives ``北京``,
``京的``, ``的天``, ``天气``): pg_trgm needs three characters to use its index, and many Chinese and Japanese
words have two, which the same GIN index now finds.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The class (PostgreSQL regular expression escapes): Hiragana, Katakana, CJK Unified Ideographs (and
# Extension A), Hangul syllables, CJK compatibility ideographs. fechatter_server/search/postgres.py sends
# two-character terms of these to the pair tokens.
BIGRAMS = r"""
CREATE FUNCTION fechatter_cjk_bigrams(t text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    cjk constant text := '[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]';
    run text;
    pairs text := '';
BEGIN
    IF t !~ (cjk || '{2}') THEN
        RETURN '';  -- most messages: one regular expression test
    END IF;
    FOR run IN SELECT m[1] FROM regexp_matches(t, '(' || cjk || '{2,})', 'g') AS m LOOP
        FOR i IN 1 .. char_length(run) - 1 LOOP
            pairs := pairs || substr(run, i, 2) || ' ';
        END LOOP;
    END LOOP;
    RETURN pairs;
END
$$
"""


def upgrade() -> None:
    op.execute(BIGRAMS)
    op.execute(
        "ALTER TABLE messages ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS ("
        "to_tsvector('english'::regconfig, content)"
        " || to_tsvector('simple'::regconfig, fechatter_cjk_bigrams(content))) STORED"
    )
    op.execute("CREATE INDEX messages_search_tsv_idx ON messages USING gin (search_tsv)")
    op.execute("DROP INDEX IF EXISTS messages_content_fts_idx")


def downgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS messages_content_fts_idx ON messages"
        " USING gin (to_tsvector('english'::regconfig, content))"
    )
    op.execute("DROP INDEX IF EXISTS messages_search_tsv_idx")
    op.execute("ALTER TABLE messages DROP COLUMN IF EXISTS search_tsv")
    op.execute("DROP FUNCTION IF EXISTS fechatter_cjk_bigrams(text)")
