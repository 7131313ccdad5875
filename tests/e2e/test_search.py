"""Message search through the gateway on the real stack (PostgreSQL engine by default).

With ``MEILI_URL`` set, the ``meili_stack`` variant runs the same tests against a stack configured with
``search.engine: meilisearch`` and that server (skipped otherwise); see README "Search".
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import User, create_chat, signup, team
from tests.sse import send
from tests.stackutil import RunningStack, make_stack

pytestmark = pytest.mark.e2e

MEILI_URL = __import__("os").environ.get("MEILI_URL", "")


@pytest.fixture(scope="module", params=["postgres", "meilisearch"])
def search_stack(request: pytest.FixtureRequest, stack: RunningStack, tmp_path_factory: Any) -> Iterator[Any]:
    if request.param == "postgres":
        yield stack
        return
    if not MEILI_URL:
        pytest.skip("MEILI_URL is not set: no Meilisearch server to run against")
    running = make_stack(
        tmp_path_factory.mktemp("meili") / "data",
        SEARCH_ENGINE="meilisearch",
        MEILI_URL=MEILI_URL,
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
async def sc(search_stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=search_stack.url, timeout=15) as http:
        http.engine = "postgres" if search_stack.env.get("SEARCH_ENGINE") != "meilisearch" else "meilisearch"  # type: ignore[attr-defined]
        yield http


def word() -> str:
    """A word no other test has written."""
    return "zq" + secrets.token_hex(4)


async def search(client: httpx.AsyncClient, user: User, q: str, **params: Any) -> httpx.Response:
    return await client.get("/api/search/messages", headers=user.auth, params={"q": q, **params})


async def found(client: httpx.AsyncClient, user: User, q: str, **params: Any) -> list[dict[str, Any]]:
    response = await search(client, user, q, **params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


async def eventually_found(
    client: httpx.AsyncClient, user: User, q: str, count: int, **params: Any
) -> list[dict[str, Any]]:
    """PostgreSQL answers at once; an index fed by events may need a moment (at most 1 s by API.md)."""
    deadline = time.monotonic() + (0 if client.engine == "postgres" else 1.5)  # type: ignore[attr-defined]
    while True:
        hits = await found(client, user, q, **params)
        if len(hits) == count or time.monotonic() > deadline:
            return hits
        await asyncio.sleep(0.05)


async def post(client: httpx.AsyncClient, user: User, chat_id: int, content: str) -> dict[str, Any]:
    response = await send(client, user, chat_id, content)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def test_a_message_is_found_as_soon_as_its_send_returns(sc: httpx.AsyncClient) -> None:
    alice, bob = await team(sc, 2)
    chat = await create_chat(sc, alice, [bob])
    key = word()
    message = await post(sc, alice, chat["id"], f"deploy {key} tonight")
    hits = await eventually_found(sc, bob, key, 1)
    assert [h["message"]["id"] for h in hits] == [message["id"]]
    assert hits[0]["message"] == message
    assert hits[0]["highlight"] == f"deploy <mark>{key}</mark> tonight"


async def test_words_prefixes_substrings_phrases_and_case(sc: httpx.AsyncClient) -> None:
    alice, bob = await team(sc, 2)
    chat = await create_chat(sc, alice, [bob])
    key = word()
    a = await post(sc, alice, chat["id"], f"The {key}Deployment finished without errors")
    b = await post(sc, alice, chat["id"], f"errors {key} finished the deployment")
    await eventually_found(sc, bob, key, 2)
    # every word must occur; order of words does not matter
    assert {h["message"]["id"] for h in await found(sc, bob, f"{key} errors finished")} == {a["id"], b["id"]}
    # prefix and substring, any case
    assert [h["message"]["id"] for h in await found(sc, bob, f"{key}DEPLOY")] == [a["id"]]
    if sc.engine == "postgres":  # type: ignore[attr-defined]  # Meilisearch matches words, not substrings
        assert [h["message"]["id"] for h in await found(sc, bob, f"{key[2:]}deploym")] == [a["id"]]
    # a phrase keeps its words together and in order
    assert [h["message"]["id"] for h in await found(sc, bob, f'{key} "finished without errors"')] == [a["id"]]
    assert [h["message"]["id"] for h in await found(sc, bob, f'{key} "finished the deployment"')] == [b["id"]]
    assert await found(sc, bob, f'{key} "errors finished without"') == []


async def test_chinese_and_japanese_text_without_spaces(sc: httpx.AsyncClient) -> None:
    alice, bob = await team(sc, 2)
    chat = await create_chat(sc, alice, [bob])
    key = word()
    zh = await post(sc, alice, chat["id"], f"{key} 我们明天在北京开会讨论搜索功能")
    ja = await post(sc, alice, chat["id"], f"{key} 東京で来週ミーティングがあります")
    await eventually_found(sc, bob, key, 2)
    assert [h["message"]["id"] for h in await found(sc, bob, f"{key} 北京")] == [zh["id"]]
    assert [h["message"]["id"] for h in await found(sc, bob, f"{key} 搜索功能")] == [zh["id"]]
    assert [h["message"]["id"] for h in await found(sc, bob, f"{key} 東京")] == [ja["id"]]
    assert [h["message"]["id"] for h in await found(sc, bob, f"{key} ミーティング")] == [ja["id"]]
    hit = (await found(sc, bob, f"{key} ミーティング"))[0]
    assert "<mark>ミーティング</mark>" in hit["highlight"]
    assert await found(sc, bob, f"{key} 大阪") == []
    if sc.engine == "postgres":  # type: ignore[attr-defined]
        # Two-character words come from the stored character pairs: adjacent characters only, kept in step
        # with edits, in Korean as well.
        ko = await post(sc, alice, chat["id"], f"{key} 내일 회의 북 경")
        assert [h["message"]["id"] for h in await found(sc, bob, f"{key} 회의")] == [ko["id"]]
        assert await found(sc, bob, f"{key} 북경") == []
        edited = await sc.patch(
            f"/api/chat/{chat['id']}/messages/{zh['id']}",
            headers=alice.auth,
            json={"content": f"{key} 上海见"},
        )
        assert edited.status_code == 200, edited.text
        assert await found(sc, bob, f"{key} 北京") == []
        assert [h["message"]["id"] for h in await found(sc, bob, f"{key} 上海")] == [zh["id"]]


async def test_filters_from_in_before_after(sc: httpx.AsyncClient) -> None:
    alice, bob = await team(sc, 2)
    one = await create_chat(sc, alice, [bob], name="one")
    two = await create_chat(sc, alice, [bob], name="two")
    key = word()
    by_alice = await post(sc, alice, one["id"], f"{key} from alice")
    by_bob = await post(sc, bob, one["id"], f"{key} from bob")
    in_two = await post(sc, bob, two["id"], f"{key} in two")
    await eventually_found(sc, bob, key, 3)

    def ids(hits: list[dict[str, Any]]) -> set[int]:
        return {h["message"]["id"] for h in hits}

    assert ids(await found(sc, bob, f"{key} from:{alice.id}")) == {by_alice["id"]}
    assert ids(await found(sc, bob, f"{key} from:{bob.id}")) == {by_bob["id"], in_two["id"]}
    assert ids(await found(sc, bob, f"{key} from:{alice.id} from:{bob.id}")) == {
        by_alice["id"],
        by_bob["id"],
        in_two["id"],
    }
    assert ids(await found(sc, bob, f"{key} in:{two['id']}")) == {in_two["id"]}
    assert ids(await found(sc, bob, key, chat_id=one["id"])) == {by_alice["id"], by_bob["id"]}
    assert ids(await found(sc, bob, f"{key} in:{two['id']}", chat_id=one["id"])) == set()
    # before:/after: exclude the day itself (UTC)
    every = {by_alice["id"], by_bob["id"], in_two["id"]}
    assert ids(await found(sc, bob, f"{key} after:2000-01-01 before:2999-12-31")) == every
    assert await found(sc, bob, f"{key} before:2000-01-01") == []
    assert await found(sc, bob, f"{key} after:2999-12-31") == []
    today = by_alice["created_at"][:10]
    assert await found(sc, bob, f"{key} after:{today}") == []
    assert await found(sc, bob, f"{key} before:{today}") == []
    # filters alone list the matching messages, newest first
    assert [h["message"]["id"] for h in await found(sc, bob, f"in:{one['id']} from:{bob.id}")] == [
        by_bob["id"]
    ]


async def test_has_file(sc: httpx.AsyncClient, search_stack: RunningStack) -> None:
    if sc.engine != "postgres":  # type: ignore[attr-defined]
        pytest.skip("attachments are written straight into PostgreSQL here; the index would not see them")
    alice, bob = await team(sc, 2)
    chat = await create_chat(sc, alice, [bob])
    key = word()
    plain = await post(sc, alice, chat["id"], f"{key} no attachment")
    with_file = await post(sc, alice, chat["id"], f"{key} see the attachment")
    # The files API lives elsewhere; attach an upload the way it stores one.
    conn = await asyncpg.connect(search_stack.database_url())
    try:
        file_id = await conn.fetchval(
            "INSERT INTO files (workspace_id, uploader_id, sha256, size, mime_type, filename)"
            " VALUES ($1, $2, 'abc', 3, 'text/plain', 'a.txt') RETURNING id",
            alice.workspace_id,
            alice.id,
        )
        await conn.execute(
            "INSERT INTO message_files (message_id, file_id) VALUES ($1, $2)", with_file["id"], file_id
        )
    finally:
        await conn.close()
    hits = await found(sc, bob, f"{key} has:file")
    assert [h["message"]["id"] for h in hits] == [with_file["id"]]
    # A hit is the whole message, its files included.
    assert [f["id"] for f in hits[0]["message"]["files"]] == [file_id]
    assert {h["message"]["id"] for h in await found(sc, bob, key)} == {plain["id"], with_file["id"]}


async def test_ranking_and_paging(sc: httpx.AsyncClient) -> None:
    alice, bob = await team(sc, 2)
    chat = await create_chat(sc, alice, [bob])
    key = word()
    sent = [await post(sc, alice, chat["id"], f"{key} note number {i}") for i in range(7)]
    await eventually_found(sc, bob, key, 7, limit=100)
    first = await search(sc, bob, key, limit=3)
    assert first.status_code == 200
    body = first.json()
    # equal matches: newest first
    assert [h["message"]["id"] for h in body["data"]] == [m["id"] for m in sent[::-1][:3]]
    assert body["meta"]["has_more"] is True and body["meta"]["next_offset"] == 3
    last = (await search(sc, bob, key, limit=3, offset=6)).json()
    assert [h["message"]["id"] for h in last["data"]] == [sent[0]["id"]]
    assert last["meta"]["has_more"] is False and last["meta"]["next_offset"] is None


async def test_whole_word_matches_come_before_substring_matches(sc: httpx.AsyncClient) -> None:
    if sc.engine != "postgres":  # type: ignore[attr-defined]
        pytest.skip("Meilisearch matches words, not substrings")
    alice, bob = await team(sc, 2)
    chat = await create_chat(sc, alice, [bob])
    key = word()
    as_word = await post(sc, alice, chat["id"], f"release {key} tonight")
    # Newer, and the text occurs three times, but only inside longer words.
    inside = await post(sc, alice, chat["id"], f"{key}a {key}b {key}c")
    await eventually_found(sc, bob, key, 2)
    assert [h["message"]["id"] for h in await found(sc, bob, key)] == [as_word["id"], inside["id"]]
    # Paging runs through both groups in that order.
    first = (await search(sc, bob, key, limit=1)).json()
    assert [h["message"]["id"] for h in first["data"]] == [as_word["id"]] and first["meta"]["has_more"]
    second = (await search(sc, bob, key, limit=1, offset=1)).json()
    assert [h["message"]["id"] for h in second["data"]] == [inside["id"]]
    assert second["meta"]["has_more"] is False
    # A phrase of whole words comes before the same text found inside words.
    phrase = await post(sc, alice, chat["id"], f"x{key} release {key}y")
    hits = await found(sc, bob, f'"release {key}"')
    assert [h["message"]["id"] for h in hits] == [as_word["id"], phrase["id"]]
    hits = await found(sc, bob, f'"{key} release"')
    assert [h["message"]["id"] for h in hits] == [phrase["id"]]


async def test_a_phrase_as_words_in_a_row_whatever_separates_them_or_ends_them(sc: httpx.AsyncClient) -> None:
    if sc.engine != "postgres":  # type: ignore[attr-defined]
        pytest.skip("Meilisearch matches words, not substrings")
    alice, bob = await team(sc, 2)
    chat = await create_chat(sc, alice, [bob])
    key = word()
    ending = await post(sc, alice, chat["id"], f"{key} releases tonight")
    underscored = await post(sc, alice, chat["id"], f"ship_{key} release now")
    upper = await post(sc, alice, chat["id"], f"{key.upper()} RELEASE")
    # The newest, but the phrase's text only starts inside a longer word.
    inside = await post(sc, alice, chat["id"], f"x{key} release")
    not_in_a_row = await post(sc, alice, chat["id"], f"{key}, release")
    hits = [h["message"]["id"] for h in await found(sc, bob, f'"{key} release"')]
    assert set(hits[:3]) == {ending["id"], underscored["id"], upper["id"]}
    assert hits[3:] == [inside["id"]]
    assert not_in_a_row["id"] not in hits


async def test_a_message_with_a_very_long_word_is_sent_and_found(sc: httpx.AsyncClient) -> None:
    """A pasted key or blob is one word of thousands of characters: longer than PostgreSQL indexes as one
    word, which must not refuse the message."""
    alice, bob = await team(sc, 2)
    chat = await create_chat(sc, alice, [bob])
    key = word()
    blob = "A" * 3000
    message = await post(sc, alice, chat["id"], f"{key} token {blob}B done")
    assert [h["message"]["id"] for h in await eventually_found(sc, bob, key, 1)] == [message["id"]]
    assert [h["message"]["id"] for h in await found(sc, bob, f'"{key} token"')] == [message["id"]]
    if sc.engine == "postgres":  # type: ignore[attr-defined]  # Meilisearch matches words, not substrings
        assert [h["message"]["id"] for h in await found(sc, bob, f'{key} "AAAB done"')] == [message["id"]]


async def test_pages_of_substring_matches_never_repeat_or_skip(sc: httpx.AsyncClient) -> None:
    if sc.engine != "postgres":  # type: ignore[attr-defined]
        pytest.skip("Meilisearch matches words, not substrings")
    alice, bob = await team(sc, 2)
    chat = await create_chat(sc, alice, [bob])
    # Letters only (the text parser splits a word at digits), ending in "ing" so that its stem differs from
    # it: the rank then counts the text as a prefix of a word, not only its stem.
    key = "va" + word().translate(str.maketrans("0123456789", "ghijklmnop")) + "ing"
    # Only inside longer words; the oldest starts with the text (a prefix, ranked above the others), the
    # newer two do not.
    texts = [f"{key}zz", f"zz{key}", f"qq{key}"]
    for text in texts:
        await post(sc, alice, chat["id"], text)
    everything = [h["message"]["id"] for h in await eventually_found(sc, bob, key, 3)]
    paged = []
    for offset in range(3):
        page = (await search(sc, bob, key, limit=1, offset=offset)).json()
        paged += [h["message"]["id"] for h in page["data"]]
    assert paged == everything
    assert len(set(paged)) == 3


async def test_highlight_is_html_escaped_around_the_marks(sc: httpx.AsyncClient) -> None:
    alice, bob = await team(sc, 2)
    chat = await create_chat(sc, alice, [bob])
    key = word()
    await post(sc, alice, chat["id"], f'<script>alert("x")</script> & {key} <b>bold</b>')
    hit = (await eventually_found(sc, bob, key, 1))[0]
    assert hit["highlight"] == (
        f"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; <mark>{key}</mark> &lt;b&gt;bold&lt;/b&gt;"
    )
    assert hit["message"]["content"].startswith("<script>")


async def test_removed_member_other_workspace_and_non_member(sc: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(sc, 3)
    chat = await create_chat(sc, alice, [bob, carol])
    key = word()
    await post(sc, alice, chat["id"], f"{key} secret plan")
    assert len(await eventually_found(sc, carol, key, 1)) == 1
    removed = await sc.delete(f"/api/chat/{chat['id']}/members/{carol.id}", headers=alice.auth)
    assert removed.status_code == 200, removed.text
    # at once, whatever the engine: membership is read from PostgreSQL at query time
    assert await found(sc, carol, key) == []
    assert await found(sc, carol, f"{key} in:{chat['id']}") == []
    refused = await search(sc, carol, key, chat_id=chat["id"])
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"

    stranger = await signup(sc)  # another workspace
    assert await found(sc, stranger, key) == []
    assert await found(sc, stranger, f"{key} in:{chat['id']}") == []
    other = await search(sc, stranger, key, chat_id=chat["id"])
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    # a member still finds it
    assert len(await found(sc, bob, key)) == 1


async def test_deleted_never_found_and_edits_found_by_new_text(sc: httpx.AsyncClient) -> None:
    alice, bob = await team(sc, 2)
    chat = await create_chat(sc, alice, [bob])
    old, new, gone = word(), word(), word()
    edited = await post(sc, alice, chat["id"], f"draft {old}")
    deleted = await post(sc, alice, chat["id"], f"oops {gone}")
    await eventually_found(sc, bob, gone, 1)
    patch = await sc.patch(
        f"/api/chat/{chat['id']}/messages/{edited['id']}",
        headers=alice.auth,
        json={"content": f"final {new}"},
    )
    assert patch.status_code == 200, patch.text
    removal = await sc.delete(f"/api/chat/{chat['id']}/messages/{deleted['id']}", headers=alice.auth)
    assert removal.status_code == 200, removal.text
    assert await eventually_found(sc, bob, gone, 0) == []
    hits = await eventually_found(sc, bob, new, 1)
    assert [h["message"]["id"] for h in hits] == [edited["id"]]
    assert hits[0]["message"]["content"] == f"final {new}" and hits[0]["message"]["edited_at"]
    assert await eventually_found(sc, bob, old, 0) == []


@pytest.mark.parametrize(
    ("q", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 10_000, "longer than"),
        ('""', "nothing to search"),
        ("from:", "needs a value"),
        ("from:abc", "positive integer"),
        ("in:-1", "positive integer"),
        ("in:99999999999999999999999", "positive integer"),
        ("before:2024-13-45", "calendar date"),
        ("after:yesterday", "YYYY-MM-DD"),
        ("after:9999-12-31", "9999-12-31"),
        ("before:2024-01-01 before:2024-02-01", "only once"),
        ("has:link", "has:file"),
        ("bad\x00byte", "control"),
        (" ".join(f"w{i}" for i in range(17)), "more than 16"),
    ],
)
async def test_bad_queries_are_a_clear_400(sc: httpx.AsyncClient, q: str, fragment: str) -> None:
    (alice,) = await team(sc, 1)
    response = await search(sc, alice, q)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["field"] == "q"
    assert fragment in error["message"]


async def test_odd_queries_never_fail(sc: httpx.AsyncClient) -> None:
    alice, bob = await team(sc, 2)
    chat = await create_chat(sc, alice, [bob])
    key = word()
    tricky = f"{key} 100% of_it \\ it's"
    message = await post(sc, alice, chat["id"], tricky)
    await eventually_found(sc, bob, key, 1)
    for q in [
        f"{key} 100%",
        f"{key} of_it",
        f"{key} \\",
        f"{key} it's",
        f"'; DROP TABLE messages; -- {key}",
        f"{key} ) OR 1=1 --",
        f"{key} & | ! <-> :* ''",
        f'{key} "unclosed phrase',
        "% _ \\",
        "http://example.com/a:b",
        "in:1 from:1 has:file",
        "😀 ∑ \u200b",
        "\U0001d41a" * 512,  # one word of 2 KiB: longer than PostgreSQL takes in a tsquery
    ]:
        response = await search(sc, bob, q)
        assert response.status_code == 200, (q, response.text)
    # bad paging
    for params in ({"limit": 0}, {"limit": 101}, {"offset": 1001}, {"limit": "x"}, {"chat_id": 0}):
        response = await search(sc, bob, key, **params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    assert (await sc.get("/api/search/messages", params={"q": key})).status_code == 401
    assert (await sc.get("/api/search/messages", headers=bob.auth)).status_code == 400
    if sc.engine != "postgres":  # type: ignore[attr-defined]
        return  # what follows is about characters inside words, which Meilisearch's tokenizer drops
    assert [h["message"]["id"] for h in await found(sc, bob, f"{key} 100%")] == [message["id"]]
    assert [h["message"]["id"] for h in await found(sc, bob, f"{key} of_it")] == [message["id"]]
    assert await found(sc, bob, f"{key} 1000%") == []  # % is a character, not a wildcard
    assert await found(sc, bob, f"{key} of-it") == []
