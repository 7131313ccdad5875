"""Mentions, read receipts and archived chats, through the gateway against the real stack."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import User, create_chat, invite, signup, team
from tests.dbstate import chat_state, execute
from tests.sse import open_sse, send
from tests.stackutil import RunningStack

pytestmark = pytest.mark.e2e


def url(chat_id: int, message_id: int, suffix: str = "") -> str:
    return f"/api/chat/{chat_id}/messages/{message_id}{suffix}"


async def sent(client: httpx.AsyncClient, user: User, chat_id: int, content: str, **extra: Any) -> dict:
    response = await send(client, user, chat_id, content, **extra)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def ok_data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert response.json()["success"] is False and error["code"] == code, error
    assert error.get("field") == field, error


async def unread_mentions(client: httpx.AsyncClient, user: User, **params: Any) -> list[dict]:
    return ok_data(await client.get("/api/mentions/unread", headers=user.auth, params=params))  # type: ignore[no-any-return]


async def chat_of(client: httpx.AsyncClient, user: User, chat_id: int) -> dict:
    chats = ok_data(await client.get("/api/workspace/chats", headers=user.auth))
    return next(c for c in chats if c["id"] == chat_id)  # type: ignore[no-any-return]


async def test_mentions_are_parsed_at_send_and_edit(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob, carol, dave = await team(client, 4)
    cid = (await create_chat(client, alice, [bob, carol], chat_type="Group"))["id"]
    # dave is in the workspace, not in the chat; alice is the sender: neither is mentioned.
    text = f"<@{bob.id}> and <@{dave.id}> and <@{alice.id}>, mail bob@here.org"
    first = await sent(client, alice, cid, text)
    assert first["mentions"] == [bob.id]
    assert (await chat_state(stack, cid))["mentions"] == [(first["id"], bob.id, "user")]
    everyone = await sent(client, carol, cid, "lunch @everyone?")
    assert everyone["mentions"] == [alice.id, bob.id]
    here = await sent(client, alice, cid, f"@here, and <@{carol.id}> especially")
    assert here["mentions"] == [bob.id, carol.id]

    bob_sees = await unread_mentions(client, bob)
    assert [(m["chat_id"], m["message"]["id"], m["mention_type"]) for m in bob_sees] == [
        (cid, here["id"], "here"),
        (cid, everyone["id"], "everyone"),
        (cid, first["id"], "user"),
    ]
    assert [m["message"] for m in bob_sees] == [here, everyone, first]
    # Sending marks the sender's chat read: alice's own message at seq 3 put everything before it behind her.
    assert await unread_mentions(client, alice) == []
    assert [(m["message"]["id"], m["mention_type"]) for m in await unread_mentions(client, carol)] == [
        (here["id"], "user")
    ]
    assert await unread_mentions(client, dave) == []
    assert (await chat_of(client, bob, cid))["unread_mentions"] == 3
    assert (await chat_of(client, carol, cid))["unread_mentions"] == 1
    assert (await chat_of(client, alice, cid))["unread_mentions"] == 0

    # An edit re-reads the text: bob is no longer mentioned by it, carol now is.
    edited = ok_data(
        await client.patch(url(cid, first["id"]), headers=alice.auth, json={"content": f"<@{carol.id}>"})
    )
    assert edited["mentions"] == [carol.id]
    listed = ok_data(await client.get(f"/api/chat/{cid}/messages", headers=bob.auth))
    assert [m["mentions"] for m in listed] == [[carol.id], [alice.id, bob.id], [bob.id, carol.id]]
    assert [m["message"]["id"] for m in await unread_mentions(client, bob)] == [here["id"], everyone["id"]]
    # carol is mentioned by the first message now, but she has read it (her own send at seq 2).
    assert [m["message"]["id"] for m in await unread_mentions(client, carol)] == [here["id"]]

    # Deleting drops them; reading past them clears them.
    ok_data(await client.delete(url(cid, here["id"]), headers=alice.auth))
    assert (await chat_state(stack, cid))["mentions"] == [
        (first["id"], carol.id, "user"),
        (everyone["id"], alice.id, "everyone"),
        (everyone["id"], bob.id, "everyone"),
    ]
    assert [m["message"]["id"] for m in await unread_mentions(client, bob)] == [everyone["id"]]
    assert (await chat_of(client, bob, cid))["unread_mentions"] == 1
    ok_data(await client.post(f"/api/chat/{cid}/read", headers=bob.auth, json={"seq": everyone["seq"]}))
    assert await unread_mentions(client, bob) == []
    assert (await chat_of(client, bob, cid))["unread_mentions"] == 0
    assert await unread_mentions(client, carol) == []


async def test_unread_mentions_span_chats_newest_first_with_a_limit(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    rooms = [(await create_chat(client, alice, [bob], name=f"r{i}"))["id"] for i in range(3)]
    ids = []
    for i in range(6):
        ids.append((await sent(client, alice, rooms[i % 3], f"<@{bob.id}> #{i}"))["id"])
    everything = await unread_mentions(client, bob)
    assert [m["message"]["id"] for m in everything] == ids[::-1]
    assert [m["chat_id"] for m in everything] == [rooms[i % 3] for i in range(6)][::-1]
    assert [m["message"]["id"] for m in await unread_mentions(client, bob, limit=2)] == ids[:3:-1]
    # Another workspace of bob's sees none of them (every query is scoped to the token's workspace).
    owner = await signup(client, workspace_name="Elsewhere")
    code = await invite(client, owner)
    session = ok_data(await client.post("/api/workspaces/join", headers=bob.auth, json={"invite_code": code}))
    assert session["workspace"]["id"] == owner.workspace_id
    other = {"Authorization": f"Bearer {session['access_token']}"}
    assert ok_data(await client.get("/api/mentions/unread", headers=other)) == []
    assert len(await unread_mentions(client, bob)) == 6
    for bad in (0, 201, -1, "x", 2**70):
        response = await client.get("/api/mentions/unread", headers=bob.auth, params={"limit": bad})
        assert_error(response, 400, "validation_error", "limit")
    assert_error(await client.get("/api/mentions/unread"), 401, "unauthorized")


async def test_receipts_follow_read_positions(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob, carol, dave = await team(client, 4)
    cid = (await create_chat(client, alice, [bob, carol], chat_type="Group"))["id"]
    other = (await create_chat(client, alice, [bob], name="elsewhere"))["id"]
    first = await sent(client, alice, cid, "one")
    second = await sent(client, bob, cid, "two")
    receipts = ok_data(await client.get(url(cid, first["id"], "/receipts"), headers=carol.auth))
    # bob's send moved bob's position to 2; carol has read nothing; the sender is in neither list.
    assert receipts == {
        "message_id": first["id"],
        "read_by": [{"user_id": bob.id, "last_read_seq": 2}],
        "unread_by": [carol.id],
    }
    ok_data(await client.post(f"/api/chat/{cid}/read", headers=carol.auth, json={"seq": 1}))
    assert ok_data(await client.get(url(cid, first["id"], "/receipts"), headers=bob.auth))["unread_by"] == []
    # alice's position is 1 (her own send); bob's message at seq 2 is unread by both others until alice reads.
    second_receipts = ok_data(await client.get(url(cid, second["id"], "/receipts"), headers=alice.auth))
    assert second_receipts == {"message_id": second["id"], "read_by": [], "unread_by": [alice.id, carol.id]}
    ok_data(await client.post(f"/api/chat/{cid}/read", headers=alice.auth, json={"seq": 5}))
    assert ok_data(await client.get(url(cid, second["id"], "/receipts"), headers=carol.auth)) == {
        "message_id": second["id"],
        "read_by": [{"user_id": alice.id, "last_read_seq": 2}],
        "unread_by": [carol.id],
    }

    outsider = await signup(client)
    before = await chat_state(stack, cid)
    assert_error(await client.get(url(cid, first["id"], "/receipts"), headers=dave.auth), 403, "forbidden")
    assert_error(
        await client.get(url(cid, first["id"], "/receipts"), headers=outsider.auth), 404, "not_found"
    )
    assert_error(await client.get(url(other, first["id"], "/receipts"), headers=bob.auth), 404, "not_found")
    assert_error(await client.get(url(cid, 999_999_999, "/receipts"), headers=bob.auth), 404, "not_found")
    for bad in (0, -1, 2**62 + 1):
        response = await client.get(url(cid, bad, "/receipts"), headers=bob.auth)
        assert_error(response, 400, "validation_error", "message_id")
    assert await chat_state(stack, cid) == before


async def test_receipts_are_refused_for_big_chats(stack: RunningStack, client: httpx.AsyncClient) -> None:
    owner = await signup(client, workspace_name="Big")
    # 50 more people in the workspace (the default limit is 50 members), put in directly: fifty sign-ups would
    # spend most of the time hashing passwords. They join the chat through the API.
    rows = await execute(
        stack,
        "WITH people AS (INSERT INTO users (email, fullname) "
        "SELECT 'big' || i || '-' || $1::bigint || '@example.test', 'Big ' || i "
        "FROM generate_series(1, 50) AS i RETURNING id) "
        "INSERT INTO workspace_members (workspace_id, user_id) SELECT $1::bigint, id FROM people "
        "RETURNING user_id",
        owner.workspace_id,
    )
    member_ids = sorted(row[0] for row in rows)
    cid = (await create_chat(client, owner, [], name="all hands", chat_type="PublicChannel"))["id"]
    message = await sent(client, owner, cid, "welcome")
    ok_data(await client.post(f"/api/chat/{cid}/members", headers=owner.auth, json={"user_ids": member_ids}))
    refused = await client.get(url(cid, message["id"], "/receipts"), headers=owner.auth)
    assert_error(refused, 409, "conflict")
    assert "50 members" in refused.json()["error"]["message"]
    # One fewer and it answers. Newcomers start with the history read, so they have read the welcome.
    ok_data(await client.delete(f"/api/chat/{cid}/members/{member_ids[0]}", headers=owner.auth))
    receipts = ok_data(await client.get(url(cid, message["id"], "/receipts"), headers=owner.auth))
    assert receipts["unread_by"] == []
    assert receipts["read_by"] == [{"user_id": u, "last_read_seq": 1} for u in member_ids[1:]]


async def test_archived_chats_are_readable_but_frozen(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    cid = (await create_chat(client, alice, [bob], chat_type="Group"))["id"]
    message = await sent(client, bob, cid, "before the archive")
    ok_data(
        await client.post(url(cid, message["id"], "/reactions"), headers=alice.auth, json={"emoji": ":+1:"})
    )
    ok_data(await client.post(url(cid, message["id"], "/pin"), headers=alice.auth))

    archived = ok_data(await client.post(f"/api/chat/{cid}/archive", headers=alice.auth))
    assert archived["archived"] is True and archived["id"] == cid
    assert (await chat_of(client, bob, cid))["archived"] is True
    assert ok_data(await client.post(f"/api/chat/{cid}/archive", headers=alice.auth)) == archived

    before = await chat_state(stack, cid)
    refusals = [
        await send(client, bob, cid, "after"),
        await client.patch(url(cid, message["id"]), headers=bob.auth, json={"content": "edited"}),
        await client.post(url(cid, message["id"], "/reactions"), headers=bob.auth, json={"emoji": ":+1:"}),
        await client.request(
            "DELETE", url(cid, message["id"], "/reactions"), headers=alice.auth, json={"emoji": ":+1:"}
        ),
        await client.post(url(cid, message["id"], "/pin"), headers=alice.auth),
        await client.delete(url(cid, message["id"], "/pin"), headers=alice.auth),
        await client.post(f"/api/chat/{cid}/members", headers=alice.auth, json={"user_ids": [carol.id]}),
    ]
    for response in refusals:
        assert_error(response, 409, "conflict")
        assert response.json()["error"]["message"] == "chat is archived"
    assert await chat_state(stack, cid) == before

    # Still readable, and reading still moves the read position.
    messages = ok_data(await client.get(f"/api/chat/{cid}/messages", headers=alice.auth))
    assert [m["id"] for m in messages] == [message["id"]]
    assert len(ok_data(await client.get(f"/api/chat/{cid}/pins", headers=bob.auth))) == 1
    ok_data(await client.get(url(cid, message["id"], "/receipts"), headers=bob.auth))
    assert (
        ok_data(await client.post(f"/api/chat/{cid}/read", headers=alice.auth, json={"seq": 1}))[
            "last_read_seq"
        ]
        == 1
    )

    unarchived = ok_data(await client.post(f"/api/chat/{cid}/unarchive", headers=alice.auth))
    assert unarchived["archived"] is False
    await sent(client, bob, cid, "back again")


async def test_a_retry_after_the_archive_gets_the_original_and_a_new_send_is_refused(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob = await team(client)
    cid = (await create_chat(client, alice, [bob], chat_type="Group"))["id"]
    keyed = {**bob.auth, "Idempotency-Key": "sent-before-the-archive"}
    first = await client.post(f"/api/chat/{cid}/messages", headers=keyed, json={"content": "before"})
    assert first.status_code == 201
    ok_data(await client.post(f"/api/chat/{cid}/archive", headers=alice.auth))
    before = await chat_state(stack, cid)

    retry = await client.post(f"/api/chat/{cid}/messages", headers=keyed, json={"content": "before"})
    assert retry.status_code == 200 and retry.json()["data"] == first.json()["data"]
    other = await client.post(f"/api/chat/{cid}/messages", headers=keyed, json={"content": "changed"})
    assert_error(other, 409, "idempotency_conflict")
    fresh = {**bob.auth, "Idempotency-Key": "after-the-archive"}
    refused = await client.post(f"/api/chat/{cid}/messages", headers=fresh, json={"content": "after"})
    assert_error(refused, 409, "conflict")
    assert await chat_state(stack, cid) == before


async def test_archiving_is_for_owners_and_admins_of_group_chats(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob, carol = await team(client, 3)
    cid = (await create_chat(client, alice, [bob], chat_type="PublicChannel"))["id"]
    direct = (await create_chat(client, alice, [carol], chat_type="Single", name=""))["id"]
    outsider = await signup(client)
    before = await chat_state(stack, cid)
    assert_error(await client.post(f"/api/chat/{cid}/archive", headers=bob.auth), 403, "forbidden")
    assert_error(await client.post(f"/api/chat/{cid}/archive", headers=carol.auth), 403, "forbidden")
    assert_error(await client.post(f"/api/chat/{cid}/archive", headers=outsider.auth), 404, "not_found")
    assert_error(await client.post("/api/chat/999999999/archive", headers=alice.auth), 404, "not_found")
    assert_error(
        await client.post("/api/chat/0/archive", headers=alice.auth), 400, "validation_error", "chat_id"
    )
    assert_error(await client.post(f"/api/chat/{cid}/archive"), 401, "unauthorized")
    assert await chat_state(stack, cid) == before
    direct_before = await chat_state(stack, direct)
    assert_error(
        await client.post(f"/api/chat/{direct}/archive", headers=alice.auth),
        400,
        "validation_error",
        "chat_id",
    )
    assert await chat_state(stack, direct) == direct_before

    ok_data(await client.post(f"/api/chat/{cid}/archive", headers=alice.auth))
    # Joining an archived public channel is adding a member: refused too.
    assert_error(await client.post(f"/api/chat/{cid}/join", headers=carol.auth), 409, "conflict")
    assert_error(await client.post(f"/api/chat/{cid}/unarchive", headers=bob.auth), 403, "forbidden")
    assert (await chat_of(client, bob, cid))["archived"] is True


def shared(chat: dict) -> dict:
    return {k: v for k, v in chat.items() if k not in ("unread_count", "unread_mentions")}


async def test_sse_tells_members_about_archiving(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    cid = (await create_chat(client, alice, [bob], chat_type="Group"))["id"]
    http, stream = await open_sse(stack, bob)
    try:
        await stream.next("connected")
        await send(client, alice, cid, "unread by bob")
        archived = ok_data(await client.post(f"/api/chat/{cid}/archive", headers=alice.auth))
        _, data = await stream.next("chat_updated", timeout=15)
        # The event goes to every member, so it leaves out the unread counts of whoever archived.
        assert data == shared(archived) and data["archived"] is True
        assert "unread_count" not in data and "unread_mentions" not in data
        # Archiving again changes nothing and publishes nothing: the next update is the unarchive.
        ok_data(await client.post(f"/api/chat/{cid}/archive", headers=alice.auth))
        unarchived = ok_data(await client.post(f"/api/chat/{cid}/unarchive", headers=alice.auth))
        _, data = await stream.next("chat_updated", timeout=15)
        assert data["archived"] is False and data == shared(unarchived)
    finally:
        await stream.close()
        await http.aclose()


async def test_openapi_documents_mentions_receipts_and_archive(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/api/openapi.json")).json()["paths"]
    assert "<@user_id>" in paths["/api/mentions/unread"]["get"]["description"]
    assert "409" in paths["/api/chat/{chat_id}/messages/{message_id}/receipts"]["get"]["description"]
    assert "chat is archived" in paths["/api/chat/{chat_id}/archive"]["post"]["description"]
    assert paths["/api/chat/{chat_id}/unarchive"]["post"]["summary"]
