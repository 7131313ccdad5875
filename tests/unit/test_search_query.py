"""The search query parser and the highlight format: pure functions, checked on many generated inputs."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fechatter_core.errors import ApiError
from fechatter_core.settings import SearchSettings
from fechatter_server.search.highlight import highlight, marked_to_html
from fechatter_server.search.postgres import like_pattern, pairs_tsquery, prefix_tsquery
from fechatter_server.search.query import ParsedQuery, parse_query

LIMITS = SearchSettings()

# Text that leans on what the grammar cares about: quotes, colons, filter names, digits, dates, spaces.
pieces = st.sampled_from(
    ['"', ":", "from:", "in:", "before:", "after:", "has:", "file", "2024-02-30", "2024-01-05", "12", "-1",
     " ", "\t", "北京", "東京", "%", "_", "\\", "'", "\x00", "\x07", "😀", "abc", "FROM:", "9" * 25]
)  # fmt: skip
queries = st.one_of(st.text(max_size=600), st.lists(pieces, max_size=60).map("".join))


@settings(max_examples=400, deadline=None)
@given(queries)
def test_parser_returns_a_query_or_a_validation_error_on_q(q: str) -> None:
    try:
        parsed = parse_query(q, LIMITS)
    except ApiError as exc:
        assert exc.status_code == 400 and exc.code == "validation_error" and exc.field == "q"
        assert exc.message
        return
    assert isinstance(parsed, ParsedQuery)
    assert len(parsed.texts) <= LIMITS.query_max_terms
    assert parsed.texts or parsed.senders or parsed.chats or parsed.before or parsed.after or parsed.has_file
    assert all(text and "\x00" not in text for text in parsed.texts)
    assert all(1 <= i <= 2**62 for i in parsed.senders + parsed.chats)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=40))
def test_every_cap_comes_from_the_settings(cap: int) -> None:
    limits = SearchSettings(query_max_chars=cap * 3, query_max_terms=cap, query_max_filters=cap)
    words = " ".join(f"w{i}" for i in range(cap))
    assert len(parse_query(words[: cap * 3], limits).terms) <= cap
    with pytest.raises(ApiError, match="more than"):
        parse_query(" ".join(f"w{i}" for i in range(cap + 1)), SearchSettings(query_max_terms=cap))
    with pytest.raises(ApiError, match="more than"):
        parse_query(" ".join("from:1" for _ in range(cap + 1)), SearchSettings(query_max_filters=cap))
    with pytest.raises(ApiError, match="longer than"):
        parse_query("x" * (cap + 1), SearchSettings(query_max_chars=cap))


def test_the_grammar() -> None:
    parsed = parse_query(
        'Deploy  "release  notes" from:7 from:7 in:3 in:4 before:2024-03-01 after:2024-02-01 has:FILE '
        "http://x.test/a:b deploy",
        LIMITS,
    )
    assert parsed.terms == ("Deploy", "http://x.test/a:b")  # repeated word (any case) kept once
    assert parsed.phrases == ("release notes",)
    assert parsed.senders == (7,) and parsed.chats == (3, 4)
    assert parsed.before == datetime(2024, 3, 1, tzinfo=UTC)
    assert parsed.after == datetime(2024, 2, 2, tzinfo=UTC)  # after the day ends
    assert parsed.has_file
    assert parse_query('"unclosed phrase', LIMITS).phrases == ("unclosed phrase",)
    assert parse_query("from:1", LIMITS).texts == ()


@pytest.mark.parametrize(
    "q",
    ["", "  ", '""', "from:", "from:x", "in:0", "before:2024-2-1", "before:2023-02-29", "has:link",
     "after:9999-12-31", "a\x00b", "before:2024-01-01 before:2024-01-02", "x" * 513]
)  # fmt: skip
def test_bad_queries(q: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_query(q, LIMITS)
    assert info.value.code == "validation_error" and info.value.field == "q"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.lists(st.text(min_size=1, max_size=8), max_size=4), st.integers(0, 50))
def test_highlight_escapes_everything_but_the_marks(content: str, texts: list[str], context: int) -> None:
    out = highlight(content, tuple(texts), context)
    bare = out.replace("<mark>", "").replace("</mark>", "")
    assert "<" not in bare and ">" not in bare
    assert out.count("<mark>") == out.count("</mark>")
    unescaped = html.unescape(bare).replace("…", "")
    assert unescaped in content.replace("…", "") or content.replace("…", "").find(unescaped) >= 0
    if texts and any(t.lower() in content.lower() for t in texts) and len(content) <= context:
        assert "<mark>" in out


def test_highlight_format() -> None:
    assert highlight("a <b> & Deploy now", ("deploy",), 80) == "a &lt;b&gt; &amp; <mark>Deploy</mark> now"
    long = "x" * 100 + " needle " + "y" * 100
    assert highlight(long, ("needle",), 10) == "…" + "x" * 9 + " <mark>needle</mark> " + "y" * 9 + "…"
    assert highlight("北京欢迎你", ("北京", "欢迎"), 80) == "<mark>北京欢迎</mark>你"
    assert marked_to_html("<i>[[a]]Hi[[/a]] & bye", "[[a]]", "[[/a]]") == "&lt;i&gt;<mark>Hi</mark> &amp; bye"


@given(st.text(max_size=50))
def test_like_pattern_and_tsquery_literals_are_well_formed(text: str) -> None:
    pattern = like_pattern(text)
    assert pattern.startswith("%") and pattern.endswith("%")
    inner = pattern[1:-1]
    # every LIKE metacharacter is escaped
    assert not re.search(r"(?<!\\)(?:\\\\)*[%_]", inner.replace("\\\\", ""))
    query = prefix_tsquery((text,))
    if query is not None:
        assert "\\" not in query and query.count("'") % 2 == 0
    pairs = pairs_tsquery(text)
    if pairs is not None:
        # only ASCII words, so the literal needs no escaping
        assert re.fullmatch(r"'[a-z0-9]+_[a-z0-9]+'( & '[a-z0-9]+_[a-z0-9]+')*:\*", pairs)


def test_pairs_of_a_phrase() -> None:
    assert pairs_tsquery("Release Build") == "'release_build':*"
    assert pairs_tsquery("ship the v2 build") == "'ship_the' & 'the_v2' & 'v2_build':*"
    # one word, punctuation, double spaces, non-ASCII: the phrase is found without the pairs
    long_word = "k" * 200
    for text in (
        "release",
        "release, build",
        "release  build",
        "café au lait",
        "北京 开会",
        " a b",
        f"a {long_word}",
        "\u212a b",
    ):
        assert pairs_tsquery(text) is None
