"""Reactions and pins, through the gateway against the real stack."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio

from tests.conftest import User, create_chat, signup, team
from tests.dbstate import chat_state, execute
from tests.sse import SseReader, open_sse, send
from tests.stackutil import RunningStack

pytestmark = pytest.mark.e2e

THUMBS = "\U0001f44d"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # a ZWJ sequence
KEYCAP = "1\ufe0f\u20e3"


def url(chat_id: int, message_id: int, suffix: str = "") -> str:
    return f"/api/chat/{chat_id}/messages/{message_id}{suffix}"


async def sent(client: httpx.AsyncClient, user: User, chat_id: int, content: str, **extra: Any) -> dict:
    response = await send(client, user, chat_id, content, **extra)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def react(client: httpx.AsyncClient, user: User, chat_id: int, mid: int, emoji: Any) -> httpx.Response:
    return await client.post(url(chat_id, mid, "/reactions"), headers=user.auth, json={"emoji": emoji})


async def unreact(
    client: httpx.AsyncClient, user: User, chat_id: int, mid: int, emoji: Any
) -> httpx.Response:
    return await client.request(
        "DELETE", url(chat_id, mid, "/reactions"), headers=user.auth, json={"emoji": emoji}
    )


async def listed(client: httpx.AsyncClient, user: User, chat_id: int) -> dict[int, dict]:
    response = await client.get(f"/api/chat/{chat_id}/messages?limit=200", headers=user.auth)
    assert response.status_code == 200, response.text
    return {m["id"]: m for m in response.json()["data"]}


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert response.json()["success"] is False and error["code"] == code, error
    assert error.get("field") == field, error


def ok_data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_reactions_are_counted_in_order_of_first_use_everywhere(client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    chat = await create_chat(client, alice, [bob, carol], chat_type="Group")
    cid = chat["id"]
    parent = await sent(client, alice, cid, "lunch?")
    assert parent["reactions"] == [] and parent["mentions"] == []

    first = ok_data(await react(client, bob, cid, parent["id"], THUMBS))
    assert first["reactions"] == [{"emoji": THUMBS, "count": 1, "user_ids": [bob.id]}]
    assert {k: v for k, v in first.items() if k != "reactions"} == {
        k: v for k, v in parent.items() if k != "reactions"
    }
    # Adding it again is the same single reaction.
    assert ok_data(await react(client, bob, cid, parent["id"], THUMBS)) == first
    ok_data(await react(client, alice, cid, parent["id"], ":tada:"))
    ok_data(await react(client, carol, cid, parent["id"], THUMBS))
    latest = ok_data(await react(client, carol, cid, parent["id"], FAMILY))
    assert latest["reactions"] == [
        {"emoji": THUMBS, "count": 2, "user_ids": [bob.id, carol.id]},
        {"emoji": ":tada:", "count": 1, "user_ids": [alice.id]},
        {"emoji": FAMILY, "count": 1, "user_ids": [carol.id]},
    ]

    # The same reactions in the list, the chat's last message, an edit, a reply listing and a retried send.
    reply = await sent(client, bob, cid, "yes", reply_to=parent["id"], idempotency_key="reply-1")
    ok_data(await react(client, alice, cid, reply["id"], KEYCAP))
    messages = await listed(client, carol, cid)
    assert messages[parent["id"]] == {**latest, "reply_count": 1}
    assert messages[reply["id"]]["reactions"] == [{"emoji": KEYCAP, "count": 1, "user_ids": [alice.id]}]
    chats = ok_data(await client.get("/api/workspace/chats", headers=carol.auth))
    last = next(c for c in chats if c["id"] == cid)["last_message"]
    assert last["id"] == reply["id"] and last["reactions"] == messages[reply["id"]]["reactions"]
    edited = ok_data(
        await client.patch(url(cid, parent["id"]), headers=alice.auth, json={"content": "lunch!"})
    )
    assert edited["reactions"] == latest["reactions"]
    replies = ok_data(await client.get(url(cid, parent["id"], "/replies"), headers=carol.auth))
    assert replies == [messages[reply["id"]]]
    retry = await send(client, bob, cid, "yes", reply_to=parent["id"], idempotency_key="reply-1")
    assert retry.status_code == 200 and retry.json()["data"] == messages[reply["id"]]

    # Taking back: by body, by URL-encoded path; taking back what one never gave changes nothing.
    # The order is that of first use among the reactions still there: carol's thumb came after alice's tada.
    after = ok_data(await unreact(client, bob, cid, parent["id"], THUMBS))
    assert after["reactions"] == [
        {"emoji": ":tada:", "count": 1, "user_ids": [alice.id]},
        {"emoji": THUMBS, "count": 1, "user_ids": [carol.id]},
        {"emoji": FAMILY, "count": 1, "user_ids": [carol.id]},
    ]
    assert ok_data(await unreact(client, bob, cid, parent["id"], THUMBS)) == after
    path = url(cid, parent["id"], "/reactions/" + quote(THUMBS, safe=""))
    after = ok_data(await client.delete(path, headers=carol.auth))
    assert [r["emoji"] for r in after["reactions"]] == [":tada:", FAMILY]
    path = url(cid, parent["id"], "/reactions/" + quote(":tada:", safe=""))
    after = ok_data(await client.delete(path, headers=alice.auth))
    assert after["reactions"] == [{"emoji": FAMILY, "count": 1, "user_ids": [carol.id]}]
    assert (await listed(client, alice, cid))[parent["id"]] == after

    # A deleted message loses its reactions and takes no new ones.
    deleted = ok_data(await client.delete(url(cid, parent["id"]), headers=alice.auth))
    assert deleted["reactions"] == []
    assert_error(await react(client, bob, cid, parent["id"], THUMBS), 409, "conflict")
    assert_error(await unreact(client, carol, cid, parent["id"], FAMILY), 409, "conflict")
    assert (await chat_state_reactions(client, alice, cid, parent["id"])) == []


async def chat_state_reactions(client: httpx.AsyncClient, user: User, cid: int, mid: int) -> list:
    return (await listed(client, user, cid))[mid]["reactions"]


async def test_reactions_are_for_members_of_the_chat(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    cid = (await create_chat(client, alice, [bob]))["id"]
    other = (await create_chat(client, alice, [bob], name="elsewhere"))["id"]
    message = await sent(client, alice, cid, "hello")
    outsider = await signup(client)
    before = await chat_state(stack, cid)
    assert_error(await react(client, carol, cid, message["id"], THUMBS), 403, "forbidden")
    assert_error(await unreact(client, carol, cid, message["id"], THUMBS), 403, "forbidden")
    assert_error(await react(client, outsider, cid, message["id"], THUMBS), 404, "not_found")
    assert_error(await react(client, bob, other, message["id"], THUMBS), 404, "not_found")
    assert_error(await react(client, bob, cid, 999_999_999, THUMBS), 404, "not_found")
    assert_error(await react(client, bob, 999_999_999, message["id"], THUMBS), 404, "not_found")
    no_token = await client.post(url(cid, message["id"], "/reactions"), json={"emoji": THUMBS})
    assert_error(no_token, 401, "unauthorized")
    assert await chat_state(stack, cid) == before


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def reaction_room(stack: RunningStack) -> tuple[User, int, int]:
    """A message with one reaction; the bad-input cases must leave exactly that."""
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as http:
        alice, bob = await team(http)
        cid = (await create_chat(http, alice, [bob]))["id"]
        message = await sent(http, alice, cid, "react to me")
        ok_data(await react(http, bob, cid, message["id"], THUMBS))
    return bob, cid, message["id"]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({}, 400, "validation_error", "emoji"),
        ({"emoji": ""}, 400, "validation_error", "emoji"),
        ({"emoji": " " + THUMBS}, 400, "validation_error", "emoji"),
        ({"emoji": THUMBS + "\n"}, 400, "validation_error", "emoji"),
        ({"emoji": THUMBS + "\x00"}, 400, "validation_error", "emoji"),
        ({"emoji": THUMBS + "\u200b"}, 400, "validation_error", "emoji"),
        ({"emoji": "ok"}, 400, "validation_error", "emoji"),
        ({"emoji": "a" + THUMBS}, 400, "validation_error", "emoji"),
        ({"emoji": "\u00e9"}, 400, "validation_error", "emoji"),
        ({"emoji": ":Tada:"}, 400, "validation_error", "emoji"),
        ({"emoji": ":two words:"}, 400, "validation_error", "emoji"),
        ({"emoji": "::"}, 400, "validation_error", "emoji"),
        ({"emoji": ":" + "a" * 63 + ":"}, 400, "validation_error", "emoji"),
        ({"emoji": THUMBS * 65}, 400, "validation_error", "emoji"),
        ({"emoji": "x" * 300}, 400, "validation_error", "emoji"),
        ({"emoji": 5}, 400, "validation_error", "emoji"),
        ({"emoji": None}, 400, "validation_error", "emoji"),
        ({"emoji": [THUMBS]}, 400, "validation_error", "emoji"),
        ({"emoji": THUMBS, "extra": 1}, 400, "validation_error", "extra"),
        ([THUMBS], 400, "validation_error", None),
        (b'{"emoji": ', 400, "bad_request", None),
        (b"", 400, "bad_request", None),
    ],
    ids=[
        "missing",
        "empty",
        "leading_space",
        "newline",
        "nul",
        "zero_width_space",
        "ascii_word",
        "letter_and_emoji",
        "accented_letter",
        "uppercase_short_name",
        "space_in_short_name",
        "empty_short_name",
        "short_name_too_long",
        "too_many_chars",
        "huge",
        "number",
        "null",
        "list",
        "unknown_field",
        "not_an_object",
        "malformed",
        "empty_body",
    ],
)
@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_bad_reaction_bodies_are_refused_and_change_nothing(
    stack: RunningStack,
    client: httpx.AsyncClient,
    reaction_room: tuple[User, int, int],
    method: str,
    body: Any,
    status: int,
    code: str,
    field: str | None,
) -> None:
    bob, cid, mid = reaction_room
    before = await chat_state(stack, cid)
    headers = {**bob.auth, "content-type": "application/json"}
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    response = await client.request(method, url(cid, mid, "/reactions"), headers=headers, content=content)
    assert_error(response, status, code, field)
    assert await chat_state(stack, cid) == before


async def test_bad_path_emoji_and_ids_are_refused(stack: RunningStack, client: httpx.AsyncClient) -> None:
    bob, cid, mid = await reaction_room_for(stack)
    before = await chat_state(stack, cid)
    for emoji in ("ok", quote(" x", safe=""), quote(THUMBS * 65, safe="")):
        response = await client.delete(url(cid, mid, f"/reactions/{emoji}"), headers=bob.auth)
        assert_error(response, 400, "validation_error", "emoji")
    for bad in (0, -1, 2**62 + 1):
        response = await react(client, bob, cid, bad, THUMBS)
        assert_error(response, 400, "validation_error", "message_id")
    assert await chat_state(stack, cid) == before


async def reaction_room_for(stack: RunningStack) -> tuple[User, int, int]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as http:
        alice, bob = await team(http)
        cid = (await create_chat(http, alice, [bob]))["id"]
        message = await sent(http, alice, cid, "react to me")
        ok_data(await react(http, bob, cid, message["id"], THUMBS))
    return bob, cid, message["id"]


async def test_distinct_emoji_per_message_are_limited(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    cid = (await create_chat(client, alice, [bob]))["id"]
    message = await sent(client, alice, cid, "vote")
    # 50 is the default limit (fixtures/fechatter.yml, REACTIONS_PER_MESSAGE_MAX): 49 are put in directly,
    # the 50th goes through the API.
    await execute(
        stack,
        "INSERT INTO message_reactions (message_id, user_id, emoji) "
        "SELECT $1, $2, ':e' || i || ':' FROM generate_series(1, 49) AS i",
        message["id"],
        alice.id,
    )
    fiftieth = ok_data(await react(client, alice, cid, message["id"], ":e50:"))
    assert len(fiftieth["reactions"]) == 50 and fiftieth["reactions"][-1]["emoji"] == ":e50:"
    before = await chat_state(stack, cid)
    assert_error(await react(client, bob, cid, message["id"], ":one_too_many:"), 409, "conflict", "emoji")
    assert await chat_state(stack, cid) == before
    # An emoji already there can still gain people.
    again = ok_data(await react(client, bob, cid, message["id"], ":e7:"))
    by_emoji = {r["emoji"]: r for r in again["reactions"]}
    assert len(by_emoji) == 50
    assert by_emoji[":e7:"] == {"emoji": ":e7:", "count": 2, "user_ids": [alice.id, bob.id]}


async def next_event(stream: SseReader, names: set[str]) -> tuple[str, Any]:
    while True:
        _, name, data = await asyncio.wait_for(stream.events.get(), 15)
        if name in names:
            return name, data


async def test_sse_tells_members_about_reactions(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    cid = (await create_chat(client, alice, [bob]))["id"]
    http, stream = await open_sse(stack, bob)
    names = {"reaction_added", "reaction_removed", "new_message"}
    try:
        await stream.next("connected")
        message = await sent(client, alice, cid, "hi")
        assert await next_event(stream, names) == ("new_message", message)
        ok_data(await react(client, alice, cid, message["id"], THUMBS))
        expected = {"chat_id": cid, "message_id": message["id"], "user_id": alice.id, "emoji": THUMBS}
        assert await next_event(stream, names) == ("reaction_added", expected)
        # Nothing changes, nothing is published: the next event is the removal.
        ok_data(await react(client, alice, cid, message["id"], THUMBS))
        ok_data(await unreact(client, alice, cid, message["id"], THUMBS))
        assert await next_event(stream, names) == ("reaction_removed", expected)
        ok_data(await unreact(client, alice, cid, message["id"], THUMBS))
        following = await sent(client, alice, cid, "next")
        assert await next_event(stream, names) == ("new_message", following)
    finally:
        await stream.close()
        await http.aclose()


async def pin(client: httpx.AsyncClient, user: User, cid: int, mid: int) -> httpx.Response:
    return await client.post(url(cid, mid, "/pin"), headers=user.auth)


async def unpin(client: httpx.AsyncClient, user: User, cid: int, mid: int) -> httpx.Response:
    return await client.delete(url(cid, mid, "/pin"), headers=user.auth)


async def pins(client: httpx.AsyncClient, user: User, cid: int) -> list[dict]:
    return ok_data(await client.get(f"/api/chat/{cid}/pins", headers=user.auth))  # type: ignore[no-any-return]


async def test_pins_are_listed_newest_first_and_deleting_unpins(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob = await team(client)
    cid = (await create_chat(client, alice, [bob], chat_type="Group"))["id"]
    first = await sent(client, alice, cid, "first")
    second = await sent(client, bob, cid, "second")
    assert await pins(client, bob, cid) == []

    pinned = ok_data(await pin(client, bob, cid, first["id"]))
    assert pinned["chat_id"] == cid and pinned["pinned_by"] == bob.id and pinned["pinned_at"]
    assert pinned["message"] == first
    # Pinning again changes nothing (same pin, same time).
    assert ok_data(await pin(client, alice, cid, first["id"])) == pinned
    ok_data(await react(client, alice, cid, second["id"], THUMBS))
    later = ok_data(await pin(client, alice, cid, second["id"]))
    listed_pins = await pins(client, bob, cid)
    assert [p["message"]["id"] for p in listed_pins] == [second["id"], first["id"]]
    assert listed_pins == [later, pinned]
    assert listed_pins[0]["message"]["reactions"][0]["emoji"] == THUMBS

    assert ok_data(await unpin(client, alice, cid, first["id"])) == {
        "chat_id": cid,
        "message_id": first["id"],
        "pinned": False,
    }
    before = await chat_state(stack, cid)
    assert ok_data(await unpin(client, alice, cid, first["id"]))["pinned"] is False
    assert await chat_state(stack, cid) == before
    assert [p["message"]["id"] for p in await pins(client, alice, cid)] == [second["id"]]

    ok_data(await client.delete(url(cid, second["id"]), headers=bob.auth))
    assert await pins(client, alice, cid) == []
    before = await chat_state(stack, cid)
    assert_error(await pin(client, alice, cid, second["id"]), 409, "conflict")
    assert await chat_state(stack, cid) == before


async def test_who_may_pin(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    channel = (await create_chat(client, alice, [bob], chat_type="PublicChannel"))["id"]
    direct = (await create_chat(client, bob, [carol], chat_type="Single", name=""))["id"]
    in_channel = await sent(client, bob, channel, "announcement?")
    in_direct = await sent(client, carol, direct, "psst")
    outsider = await signup(client)
    before = await chat_state(stack, channel)
    # A channel member who is neither owner nor admin may not; a non-member may not even look.
    assert_error(await pin(client, bob, channel, in_channel["id"]), 403, "forbidden")
    assert_error(await pin(client, carol, channel, in_channel["id"]), 403, "forbidden")
    assert_error(await client.get(f"/api/chat/{channel}/pins", headers=carol.auth), 403, "forbidden")
    assert_error(await pin(client, outsider, channel, in_channel["id"]), 404, "not_found")
    assert_error(await client.get(f"/api/chat/{channel}/pins", headers=outsider.auth), 404, "not_found")
    assert_error(await pin(client, alice, channel, in_direct["id"]), 404, "not_found")
    assert_error(await pin(client, alice, channel, 999_999_999), 404, "not_found")
    assert_error(await pin(client, alice, channel, 0), 400, "validation_error", "message_id")
    assert await chat_state(stack, channel) == before
    ok_data(await pin(client, alice, channel, in_channel["id"]))
    assert_error(await unpin(client, bob, channel, in_channel["id"]), 403, "forbidden")
    # In a direct chat either person pins.
    assert ok_data(await pin(client, bob, direct, in_direct["id"]))["pinned_by"] == bob.id


async def test_pins_per_chat_are_limited(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    cid = (await create_chat(client, alice, [bob], chat_type="Group"))["id"]
    ids = [(await sent(client, alice, cid, f"m{i}"))["id"] for i in range(3)]
    # 100 is the default limit (PINS_PER_CHAT_MAX): 99 older messages and their pins are put in directly.
    await execute(
        stack,
        "WITH bulk AS (INSERT INTO messages (chat_id, seq, sender_id, content) "
        "SELECT $1, 3 + i, $2, 'bulk ' || i FROM generate_series(1, 99) AS i RETURNING id) "
        "INSERT INTO message_pins (message_id, chat_id, pinned_by, pinned_at) "
        "SELECT id, $1, $2, now() - interval '1 hour' FROM bulk",
        cid,
        alice.id,
    )
    await execute(stack, "UPDATE chats SET last_seq = 102 WHERE id = $1", cid)
    hundredth = ok_data(await pin(client, bob, cid, ids[0]))
    before = await chat_state(stack, cid)
    assert_error(await pin(client, bob, cid, ids[1]), 409, "conflict")
    assert await chat_state(stack, cid) == before
    listed_pins = await pins(client, alice, cid)
    assert len(listed_pins) == 100 and listed_pins[0] == hundredth
    assert ok_data(await pin(client, bob, cid, ids[0])) == hundredth  # already pinned: fine at the limit
    ok_data(await unpin(client, bob, cid, ids[0]))
    ok_data(await pin(client, bob, cid, ids[2]))


async def test_sse_tells_members_about_pins(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    cid = (await create_chat(client, alice, [bob], chat_type="Group"))["id"]
    http, stream = await open_sse(stack, bob)
    names = {"message_pinned", "message_unpinned", "message_deleted", "new_message"}
    try:
        await stream.next("connected")
        message = await sent(client, alice, cid, "pin me")
        assert await next_event(stream, names) == ("new_message", message)
        pinned = ok_data(await pin(client, alice, cid, message["id"]))
        assert await next_event(stream, names) == ("message_pinned", {"message_id": message["id"], **pinned})
        ok_data(await unpin(client, alice, cid, message["id"]))
        unpinned = {"chat_id": cid, "message_id": message["id"], "unpinned_by": alice.id}
        assert await next_event(stream, names) == ("message_unpinned", unpinned)
        ok_data(await pin(client, bob, cid, message["id"]))
        assert (await next_event(stream, names))[0] == "message_pinned"
        ok_data(await client.delete(url(cid, message["id"]), headers=alice.auth))
        assert (await next_event(stream, names))[0] == "message_deleted"
        assert await next_event(stream, names) == ("message_unpinned", unpinned)
    finally:
        await stream.close()
        await http.aclose()


async def test_openapi_documents_reactions_and_pins(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/api/openapi.json")).json()["paths"]
    reactions = paths["/api/chat/{chat_id}/messages/{message_id}/reactions"]
    assert ":+1:" in reactions["post"]["description"] and reactions["delete"]["summary"]
    assert paths["/api/chat/{chat_id}/messages/{message_id}/reactions/{emoji}"]["delete"]["summary"]
    pin_route = paths["/api/chat/{chat_id}/messages/{message_id}/pin"]
    assert "owner or an admin" in pin_route["post"]["description"] and pin_route["delete"]["summary"]
    assert paths["/api/chat/{chat_id}/pins"]["get"]["summary"]
