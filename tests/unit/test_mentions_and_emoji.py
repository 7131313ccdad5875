"""Mention parsing and the emoji rule: pure functions, checked by examples and by hypothesis."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from fechatter_server.mentions.parse import Parsed, parse, resolve
from fechatter_server.reactions.emoji import emoji_problem


def test_user_tokens_and_broadcast_words() -> None:
    assert parse("hi <@12> and <@7>, see <@12>") == Parsed(user_ids=frozenset({7, 12}))
    assert parse("@everyone look") == Parsed(everyone=True)
    assert parse("(@here)") == Parsed(here=True)
    assert parse("@here and @everyone") == Parsed(everyone=True, here=True)


def test_look_alikes_mention_nobody() -> None:
    for text in (
        "mail me@here.org",
        "@hereafter",
        "@everyones",
        "<@0>",
        "<@-3>",
        "<@ 5>",
        "<@5 >",
        "<@abc>",
        "@12",
        "<@" + "9" * 25 + ">",
        "<@4611686018427387905>",  # beyond 2**62
        "@@everyone",
    ):
        assert parse(text) == Parsed(), text


def test_resolve_keeps_members_and_drops_the_sender() -> None:
    members = {1, 2, 3}
    assert resolve(parse("<@2> <@9> <@1>"), members, sender_id=1) == {2: "user"}
    assert resolve(parse("@everyone"), members, sender_id=1) == {2: "everyone", 3: "everyone"}
    assert resolve(parse("@here"), members, sender_id=3) == {1: "here", 2: "here"}
    # Named by id beats the broadcast; everyone beats here.
    assert resolve(parse("@here @everyone <@3>"), members, sender_id=1) == {2: "everyone", 3: "user"}
    assert resolve(parse("nothing"), members, sender_id=1) == {}


ids = st.integers(min_value=1, max_value=2**62)


@given(st.lists(ids, max_size=20), st.text(alphabet=st.characters(exclude_characters="<>@"), max_size=50))
def test_every_token_is_found_whatever_surrounds_it(user_ids: list[int], filler: str) -> None:
    text = filler.join(f"<@{u}>" for u in user_ids) + filler
    assert parse(text).user_ids == frozenset(user_ids)


@given(st.text(max_size=200), st.sets(ids, max_size=10), ids)
def test_resolve_never_mentions_the_sender_or_strangers(text: str, members: set[int], sender: int) -> None:
    found = resolve(parse(text), members, sender)
    assert sender not in found
    assert set(found) <= members
    assert set(found.values()) <= {"user", "everyone", "here"}


def test_emoji_rule() -> None:
    accepted = [
        "\U0001f44d",
        "\U0001f44d\U0001f3fd",  # skin tone
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # family (ZWJ)
        "\u2764\ufe0f",
        "1\ufe0f\u20e3",  # keycap
        "\U0001f1eb\U0001f1f7",  # flag
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland
        ":+1:",
        ":white_check_mark:",
        ":a:",
    ]
    for emoji in accepted:
        assert emoji_problem(emoji) is None, emoji
    refused = ["", "ok", "a\U0001f44d", " \U0001f44d", "\U0001f44d\n", "\u00e9", ":Tada:", "::", ":a b:", "1"]
    refused += ["\U0001f44d\u200b", "\U0001f44d\x00", "\ue000", "\U0001f44d" * 65, ":" + "a" * 63 + ":"]
    for emoji in refused:
        assert emoji_problem(emoji) is not None, repr(emoji)


@given(st.text(max_size=80))
def test_accepted_emoji_fit_the_column_and_carry_no_space_or_control(text: str) -> None:
    if emoji_problem(text) is None:
        assert 1 <= len(text) <= 64
        assert not any(c.isspace() or unicodedata.category(c) == "Cc" for c in text)
        if not text.startswith(":"):
            assert not any(c.isalpha() for c in text)
