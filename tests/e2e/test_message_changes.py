"""Editing, deleting, edit history and replies, through the gateway against the real stack."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import User, create_chat, signup, team
from tests.sse import SseReader, open_sse, send
from tests.stackutil import RunningStack

pytestmark = pytest.mark.e2e


def message_url(chat_id: int, message_id: int, suffix: str = "") -> str:
    return f"/api/chat/{chat_id}/messages/{message_id}{suffix}"


async def sent(client: httpx.AsyncClient, user: User, chat_id: int, content: str, **extra: Any) -> dict:
    response = await send(client, user, chat_id, content, **extra)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def edit(
    client: httpx.AsyncClient, user: User, chat_id: int, message_id: int, content: str
) -> httpx.Response:
    return await client.patch(message_url(chat_id, message_id), headers=user.auth, json={"content": content})


async def remove(client: httpx.AsyncClient, user: User, chat_id: int, message_id: int) -> httpx.Response:
    return await client.delete(message_url(chat_id, message_id), headers=user.auth)


async def listed(client: httpx.AsyncClient, user: User, chat_id: int) -> dict[int, dict]:
    response = await client.get(f"/api/chat/{chat_id}/messages?limit=200", headers=user.auth)
    assert response.status_code == 200, response.text
    return {m["id"]: m for m in response.json()["data"]}


async def history(client: httpx.AsyncClient, user: User, chat_id: int, message_id: int) -> list[dict]:
    response = await client.get(message_url(chat_id, message_id, "/history"), headers=user.auth)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def unread(client: httpx.AsyncClient, user: User, chat_id: int) -> int:
    chats = (await client.get("/api/workspace/chats", headers=user.auth)).json()["data"]
    return next(c["unread_count"] for c in chats if c["id"] == chat_id)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code, body


async def test_sender_edits_and_history_keeps_previous_versions(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    original = await sent(client, alice, chat["id"], "first", idempotency_key="edit-me")
    assert original["edited_at"] is None

    first = await edit(client, alice, chat["id"], original["id"], "  second  ")
    assert first.status_code == 200, first.text
    first_data = first.json()["data"]
    assert first_data["content"] == "second" and first_data["edited_at"]
    unchanged = ("id", "chat_id", "seq", "sender_id", "created_at", "reply_to", "idempotency_key", "deleted")
    assert {k: first_data[k] for k in unchanged} == {k: original[k] for k in unchanged}

    second = (await edit(client, alice, chat["id"], original["id"], "third")).json()["data"]
    assert second["content"] == "third" and second["edited_at"] >= first_data["edited_at"]

    # Every member sees the earlier texts, oldest first, each stamped with the edit that replaced it.
    assert await history(client, bob, chat["id"], original["id"]) == [
        {"content": "first", "edited_at": first_data["edited_at"]},
        {"content": "second", "edited_at": second["edited_at"]},
    ]
    assert (await listed(client, bob, chat["id"]))[original["id"]] == second

    # The same text again (after trimming) changes nothing: same answer, no history entry.
    same = await edit(client, alice, chat["id"], original["id"], " third ")
    assert same.status_code == 200 and same.json()["data"] == second
    assert len(await history(client, alice, chat["id"], original["id"])) == 2

    # A retry of the original send still finds the message: it is matched against what was sent.
    retry = await send(client, alice, chat["id"], "first", idempotency_key="edit-me")
    assert retry.status_code == 200, retry.text
    assert retry.json()["data"] == second
    clash = await send(client, alice, chat["id"], "third", idempotency_key="edit-me")
    assert_error(clash, 409, "idempotency_conflict")

    # The limit counts trimmed characters, exactly as for a send.
    longest = await edit(client, alice, chat["id"], original["id"], "  " + "y" * 4000 + "\n")
    assert longest.status_code == 200 and longest.json()["data"]["content"] == "y" * 4000


async def test_edit_is_refused_to_others_outside_the_chat_and_after_delete(client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    chat = await create_chat(client, alice, [bob])
    other_chat = await create_chat(client, alice, [bob], name="elsewhere")
    mine = await sent(client, alice, chat["id"], "alice wrote this")
    bobs = await sent(client, bob, chat["id"], "bob wrote this")

    assert_error(await edit(client, bob, chat["id"], mine["id"], "hijack"), 403, "forbidden")
    # Owning the chat allows deleting others' messages, never rewriting them.
    assert_error(await edit(client, alice, chat["id"], bobs["id"], "hijack"), 403, "forbidden")
    assert_error(await edit(client, carol, chat["id"], mine["id"], "hijack"), 403, "forbidden")
    outsider = await signup(client)
    assert_error(await edit(client, outsider, chat["id"], mine["id"], "hijack"), 404, "not_found")
    assert_error(await edit(client, alice, other_chat["id"], mine["id"], "moved"), 404, "not_found")
    assert_error(await edit(client, alice, chat["id"], 999_999_999, "nobody"), 404, "not_found")
    for bad_id in (0, -3, 2**62 + 1):
        response = await edit(client, alice, chat["id"], bad_id, "x")
        assert_error(response, 400, "validation_error")
        assert response.json()["error"]["field"] == "message_id"

    messages = await listed(client, alice, chat["id"])
    assert messages[mine["id"]] == mine and messages[bobs["id"]] == bobs

    assert (await remove(client, alice, chat["id"], mine["id"])).status_code == 200
    gone = await edit(client, alice, chat["id"], mine["id"], "resurrect")
    assert_error(gone, 409, "conflict")
    assert gone.json()["error"]["message"] == "The message was deleted"
    assert (await listed(client, alice, chat["id"]))[mine["id"]]["content"] == ""


async def test_concurrent_edits_replies_and_delete_stay_consistent(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    message = await sent(client, alice, chat["id"], "v0")
    contents = [f"v{i}" for i in range(1, 11)]
    results = await asyncio.gather(
        *(edit(client, alice, chat["id"], message["id"], c) for c in contents),
        *(send(client, bob, chat["id"], f"reply {i}", reply_to=message["id"]) for i in range(5)),
    )
    assert [r.status_code for r in results] == [200] * 10 + [201] * 5
    # The edits were applied one at a time: each history entry is the text the previous edit left.
    previous = [h["content"] for h in await history(client, bob, chat["id"], message["id"])]
    final = (await listed(client, bob, chat["id"]))[message["id"]]["content"]
    assert previous[0] == "v0" and len(previous) == 10
    assert sorted([*previous[1:], final]) == sorted(contents)
    replies = (await client.get(message_url(chat["id"], message["id"], "/replies"), headers=bob.auth)).json()
    assert len(replies["data"]) == 5

    raced = await asyncio.gather(
        edit(client, alice, chat["id"], message["id"], "last word"),
        remove(client, alice, chat["id"], message["id"]),
    )
    assert raced[1].status_code == 200 and raced[0].status_code in (200, 409)
    after = (await listed(client, bob, chat["id"]))[message["id"]]
    assert after["deleted"] is True and after["content"] == ""
    assert await history(client, bob, chat["id"], message["id"]) == []


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "validation_error", None),
        ({"content": ""}, "validation_error", "content"),
        ({"content": "   "}, "validation_error", "content"),
        ({"content": "x" * 4001}, "validation_error", "content"),
        ({"content": 5}, "validation_error", "content"),
        ({"content": None}, "validation_error", "content"),
        ({"content": "a\x00b"}, "validation_error", "content"),
        ({"content": "fine", "unknown": 1}, "validation_error", None),
        (b'{"content": ', "bad_request", None),
    ],
    ids=["missing", "empty", "blank", "too_long", "number", "null", "nul_char", "unknown_field", "malformed"],
)
async def test_bad_edit_bodies_are_refused_and_change_nothing(
    client: httpx.AsyncClient, body: dict[str, Any] | bytes, code: str, field: str | None
) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    message = await sent(client, alice, chat["id"], "keep me")
    url = message_url(chat["id"], message["id"])
    if isinstance(body, bytes):
        response = await client.patch(
            url, headers={**alice.auth, "content-type": "application/json"}, content=body
        )
    else:
        response = await client.patch(url, headers=alice.auth, json=body)
    assert_error(response, 400, code)
    if field:
        assert response.json()["error"]["field"] == field
    assert (await listed(client, bob, chat["id"]))[message["id"]] == message
    assert await history(client, alice, chat["id"], message["id"]) == []


async def test_delete_by_sender_and_owner_keeps_the_seq_and_erases_the_text(
    client: httpx.AsyncClient,
) -> None:
    alice, bob, carol, dave = await team(client, 4)
    chat = await create_chat(client, alice, [bob, carol, dave])
    first = await sent(client, bob, chat["id"], "bob one", idempotency_key="bob-1")
    assert (await edit(client, bob, chat["id"], first["id"], "bob one, edited")).status_code == 200
    middle = await sent(client, carol, chat["id"], "carol")
    last = await sent(client, bob, chat["id"], "bob two")
    assert [first["seq"], middle["seq"], last["seq"]] == [1, 2, 3]
    assert await unread(client, dave, chat["id"]) == 3
    assert await unread(client, alice, chat["id"]) == 3

    assert_error(await remove(client, carol, chat["id"], last["id"]), 403, "forbidden")
    assert_error(await remove(client, carol, chat["id"], 999_999_999), 404, "not_found")
    outsider = await signup(client)
    assert_error(await remove(client, outsider, chat["id"], first["id"]), 404, "not_found")

    by_sender = await remove(client, bob, chat["id"], first["id"])
    assert by_sender.status_code == 200, by_sender.text
    deleted = by_sender.json()["data"]
    assert deleted["deleted"] is True and deleted["content"] == "" and deleted["seq"] == 1
    assert deleted["id"] == first["id"] and deleted["edited_at"]
    again = await remove(client, bob, chat["id"], first["id"])
    assert again.status_code == 200 and again.json()["data"] == deleted
    # The previous texts went with it.
    assert await history(client, alice, chat["id"], first["id"]) == []
    # A late retry of the original send gets the original message, as deleted.
    retry = await send(client, bob, chat["id"], "bob one", idempotency_key="bob-1")
    assert retry.status_code == 200 and retry.json()["data"] == deleted

    by_owner = await remove(client, alice, chat["id"], last["id"])
    assert by_owner.status_code == 200, by_owner.text
    assert by_owner.json()["data"]["deleted"] is True and by_owner.json()["data"]["sender_id"] == bob.id

    messages = await listed(client, dave, chat["id"])
    assert [m["seq"] for m in messages.values()] == [1, 2, 3]
    assert messages[first["id"]] == deleted
    assert messages[last["id"]]["content"] == "" and messages[last["id"]]["deleted"] is True
    assert messages[middle["id"]] == middle

    # Unread counts no longer include them, and the chat's last message carries no text.
    assert await unread(client, dave, chat["id"]) == 1
    assert await unread(client, alice, chat["id"]) == 1
    chats = (await client.get("/api/workspace/chats", headers=dave.auth)).json()["data"]
    last_message = next(c for c in chats if c["id"] == chat["id"])["last_message"]
    assert last_message["id"] == last["id"] and last_message["content"] == "" and last_message["deleted"]


async def test_a_message_counts_its_replies_wherever_it_is_read(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    parent = await sent(client, alice, chat["id"], "who is in on friday?")
    assert parent["reply_count"] == 0
    # Twelve replies at once from two people, one of them with a file-less retry of the same key.
    answers = await asyncio.gather(
        *(
            send(client, bob if i % 2 else alice, chat["id"], f"me {i}", reply_to=parent["id"])
            for i in range(12)
        )
    )
    assert [r.status_code for r in answers] == [201] * 12
    keyed = await sent(client, bob, chat["id"], "me too", reply_to=parent["id"], idempotency_key="k1")
    retried = await send(client, bob, chat["id"], "me too", reply_to=parent["id"], idempotency_key="k1")
    assert retried.status_code == 200 and retried.json()["data"]["id"] == keyed["id"]
    # A reply to a reply counts for the reply, not for the message it answers.
    nested = await sent(client, alice, chat["id"], "which one?", reply_to=keyed["id"])

    async def count() -> int:
        return (await listed(client, bob, chat["id"]))[parent["id"]]["reply_count"]

    assert await count() == 13
    listing = await listed(client, alice, chat["id"])
    assert listing[keyed["id"]]["reply_count"] == 1 and listing[nested["id"]]["reply_count"] == 0

    # A deleted reply no longer counts; deleting it again changes nothing.
    assert (await remove(client, bob, chat["id"], keyed["id"])).status_code == 200
    assert (await remove(client, bob, chat["id"], keyed["id"])).status_code == 200
    assert await count() == 12
    # Editing the message or a reply, or reacting, leaves the count alone.
    assert (await edit(client, alice, chat["id"], parent["id"], "who is in on saturday?")).status_code == 200
    first = answers[0].json()["data"]
    assert (await edit(client, alice, chat["id"], first["id"], "me 0, edited")).status_code == 200
    assert await count() == 12

    # The count is the same on every read that carries the message.
    replies = (await client.get(message_url(chat["id"], parent["id"], "/replies"), headers=bob.auth)).json()
    assert len([m for m in replies["data"] if not m["deleted"]]) == 12
    reacted = await client.post(
        message_url(chat["id"], parent["id"], "/reactions"), headers=bob.auth, json={"emoji": "👍"}
    )
    assert reacted.status_code in (200, 201), reacted.text
    assert reacted.json()["data"]["reply_count"] == 12
    pinned = await client.post(message_url(chat["id"], parent["id"], "/pin"), headers=alice.auth)
    assert pinned.status_code in (200, 201), pinned.text
    pins = (await client.get(f"/api/chat/{chat['id']}/pins", headers=bob.auth)).json()["data"]
    assert [p["message"]["reply_count"] for p in pins] == [12]
    # The parent deleted keeps its count: its replies are still there to be read.
    deleted = await remove(client, alice, chat["id"], parent["id"])
    assert deleted.json()["data"]["reply_count"] == 12
    assert await count() == 12


async def test_replies_are_listed_and_paged(client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    chat = await create_chat(client, alice, [bob])
    other_chat = await create_chat(client, alice, [bob], name="elsewhere")
    parent = await sent(client, alice, chat["id"], "question")
    unrelated = await sent(client, bob, chat["id"], "unrelated")
    replies = []
    for i in range(5):
        replies.append(
            await sent(client, bob if i % 2 else alice, chat["id"], f"answer {i}", reply_to=parent["id"])
        )
        await sent(client, bob, chat["id"], f"aside {i}", reply_to=unrelated["id"])
    assert (await remove(client, bob, chat["id"], replies[3]["id"])).status_code == 200

    url = message_url(chat["id"], parent["id"], "/replies")
    whole = (await client.get(url, headers=bob.auth)).json()
    assert [m["id"] for m in whole["data"]] == [r["id"] for r in replies]
    assert whole["meta"]["has_more"] is False
    assert whole["data"][3]["deleted"] is True and whole["data"][3]["content"] == ""
    assert whole["data"][0] == replies[0]

    seen: list[int] = []
    after = None
    pages = []
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"after": after} if after is not None else {})
        page = (await client.get(url, headers=alice.auth, params=params)).json()
        seen += [m["id"] for m in page["data"]]
        pages.append(page["meta"]["has_more"])
        if not page["meta"]["has_more"]:
            break
        after = page["data"][-1]["seq"]
    assert seen == [r["id"] for r in replies] and pages == [True, True, False]
    beyond = (await client.get(url, headers=alice.auth, params={"after": replies[-1]["seq"]})).json()
    assert beyond["data"] == [] and beyond["meta"]["has_more"] is False

    none = (await client.get(message_url(chat["id"], replies[0]["id"], "/replies"), headers=bob.auth)).json()
    assert none["data"] == [] and none["meta"]["has_more"] is False

    missing = await client.get(message_url(chat["id"], 999_999_999, "/replies"), headers=bob.auth)
    assert_error(missing, 404, "not_found")
    elsewhere = await client.get(message_url(other_chat["id"], parent["id"], "/replies"), headers=bob.auth)
    assert_error(elsewhere, 404, "not_found")
    assert_error(await client.get(url, headers=carol.auth), 403, "forbidden")
    assert_error(
        await client.get(message_url(chat["id"], parent["id"], "/history"), headers=carol.auth),
        403,
        "forbidden",
    )
    for params in ({"limit": 0}, {"limit": 201}, {"after": -1}):
        bad = await client.get(url, headers=alice.auth, params=params)
        assert_error(bad, 400, "validation_error")
        assert bad.json()["error"]["field"] == next(iter(params))


async def next_change(stream: SseReader) -> tuple[str, Any]:
    """The next event about a message of a chat, skipping presence and other noise."""
    while True:
        # The bound only keeps a lost event from hanging the run; it is no latency requirement.
        _, name, data = await asyncio.wait_for(stream.events.get(), 15)
        if name in {"new_message", "message_updated", "message_deleted"}:
            return name, data


async def test_sse_tells_members_about_edits_and_deletes(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    http, stream = await open_sse(stack, bob)
    try:
        await stream.next("connected")
        message = await sent(client, alice, chat["id"], "draft")
        assert await next_change(stream) == ("new_message", message)

        edited = (await edit(client, alice, chat["id"], message["id"], "final")).json()["data"]
        name, data = await next_change(stream)
        assert name == "message_updated" and data == edited
        assert data["content"] == "final" and data["edited_at"]

        # A no-op edit publishes nothing: the next change seen is the delete.
        assert (await edit(client, alice, chat["id"], message["id"], "final")).status_code == 200
        deleted = (await remove(client, alice, chat["id"], message["id"])).json()["data"]
        name, data = await next_change(stream)
        assert name == "message_deleted" and data == deleted
        assert data["deleted"] is True and data["content"] == ""

        # Deleting again publishes nothing either: the next change is the following message.
        assert (await remove(client, alice, chat["id"], message["id"])).status_code == 200
        following = await sent(client, alice, chat["id"], "next")
        assert await next_change(stream) == ("new_message", following)
    finally:
        await stream.close()
        await http.aclose()


async def test_openapi_documents_the_message_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/api/openapi.json")).json()["paths"]
    one = paths["/api/chat/{chat_id}/messages/{message_id}"]
    assert one["patch"]["summary"] and one["delete"]["summary"]
    history_route = paths["/api/chat/{chat_id}/messages/{message_id}/history"]["get"]
    assert "current version is the message itself" in history_route["description"]
    assert paths["/api/chat/{chat_id}/messages/{message_id}/replies"]["get"]["summary"]


async def test_a_removed_member_retrying_an_old_key_gets_403_not_the_message(
    client: httpx.AsyncClient,
) -> None:
    alice, bob = await team(client)
    chat_id = (await create_chat(client, alice, [bob]))["id"]
    first = await sent(client, bob, chat_id, "keyed", idempotency_key="bob-key-1")
    # While a member, a retry returns the original.
    again = await send(client, bob, chat_id, "keyed", idempotency_key="bob-key-1")
    assert again.status_code == 200 and again.json()["data"]["id"] == first["id"]
    removed = await client.delete(f"/api/chat/{chat_id}/members/{bob.id}", headers=alice.auth)
    assert removed.status_code == 200, removed.text
    assert_error(await send(client, bob, chat_id, "keyed", idempotency_key="bob-key-1"), 403, "forbidden")
