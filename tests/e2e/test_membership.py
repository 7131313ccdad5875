"""Chat membership: list, add, remove, leave, join public channels, rename — and what it does to the live
stream (a new member starts receiving at once, a removed one stops)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import User, create_chat, signup, team
from tests.sse import open_sse, send
from tests.stackutil import RunningStack

pytestmark = pytest.mark.e2e


async def add(client: httpx.AsyncClient, actor: User, chat_id: int, *users: User) -> httpx.Response:
    return await client.post(
        f"/api/chat/{chat_id}/members", headers=actor.auth, json={"user_ids": [u.id for u in users]}
    )


async def members(client: httpx.AsyncClient, actor: User, chat_id: int) -> list[int]:
    response = await client.get(f"/api/chat/{chat_id}/members", headers=actor.auth)
    assert response.status_code == 200, response.text
    return [u["id"] for u in response.json()["data"]]


async def test_group_members_add_people_and_newcomers_start_with_history_read(
    client: httpx.AsyncClient,
) -> None:
    alice, bob, carol = await team(client, 3)
    chat = await create_chat(client, alice, [bob], chat_type="Group", name="trio")
    for i in range(3):
        await send(client, alice, chat["id"], f"before carol {i}")

    added = await add(client, bob, chat["id"], carol, bob)  # bob is already in: ignored
    assert added.status_code == 200, added.text
    assert added.json()["data"]["member_ids"] == sorted([alice.id, bob.id, carol.id])
    assert await members(client, carol, chat["id"]) == [alice.id, bob.id, carol.id]

    mine = (await client.get(f"/api/chat/{chat['id']}", headers=carol.auth)).json()["data"]
    assert mine["unread_count"] == 0
    history = (await client.get(f"/api/chat/{chat['id']}/messages", headers=carol.auth)).json()["data"]
    assert [m["content"] for m in history] == [f"before carol {i}" for i in range(3)]
    await send(client, alice, chat["id"], "welcome")
    assert (await client.get(f"/api/chat/{chat['id']}", headers=carol.auth)).json()["data"][
        "unread_count"
    ] == 1


async def test_private_channel_only_managers_add_and_remove(client: httpx.AsyncClient) -> None:
    alice, bob, carol, dave = await team(client, 4)
    chat = await create_chat(client, alice, [bob], chat_type="PrivateChannel", name="secret")
    refused = await add(client, bob, chat["id"], carol)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert (await add(client, alice, chat["id"], carol, dave)).status_code == 200

    not_allowed = await client.delete(f"/api/chat/{chat['id']}/members/{carol.id}", headers=bob.auth)
    assert not_allowed.status_code == 403
    owner_leaves = await client.delete(f"/api/chat/{chat['id']}/members/{alice.id}", headers=alice.auth)
    # The owner may leave; removing the owner by someone else is refused (checked below).
    assert owner_leaves.status_code == 200
    new_owner = (await client.get(f"/api/chat/{chat['id']}", headers=bob.auth)).json()["data"]["owner_id"]
    assert new_owner == bob.id  # the earliest remaining member
    assert (await client.get(f"/api/chat/{chat['id']}", headers=alice.auth)).status_code == 403

    removed = await client.delete(f"/api/chat/{chat['id']}/members/{carol.id}", headers=bob.auth)
    assert removed.status_code == 200 and removed.json()["data"] == {
        "chat_id": chat["id"],
        "user_id": carol.id,
    }
    assert (await send(client, carol, chat["id"], "still here?")).status_code == 403
    cannot_remove_owner = await client.delete(f"/api/chat/{chat['id']}/members/{bob.id}", headers=dave.auth)
    assert cannot_remove_owner.status_code == 403
    gone = await client.delete(f"/api/chat/{chat['id']}/members/{carol.id}", headers=bob.auth)
    assert gone.status_code == 404


async def test_public_channels_are_browsed_joined_and_left(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    channel = await create_chat(client, alice, [], chat_type="PublicChannel", name="announcements")
    private = await create_chat(client, alice, [], chat_type="PrivateChannel", name="hidden")

    browsed = (await client.get("/api/workspace/channels", headers=bob.auth)).json()["data"]
    assert [c["id"] for c in browsed] == [channel["id"]]
    assert (await client.get(f"/api/chat/{channel['id']}", headers=bob.auth)).status_code == 200
    assert await members(client, bob, channel["id"]) == [alice.id]
    assert (await client.get(f"/api/chat/{private['id']}/members", headers=bob.auth)).status_code == 403
    assert (await send(client, bob, channel["id"], "not yet a member")).status_code == 403

    joined = await client.post(f"/api/chat/{channel['id']}/join", headers=bob.auth)
    assert joined.status_code == 200 and bob.id in joined.json()["data"]["member_ids"]
    assert (await send(client, bob, channel["id"], "hello all")).status_code == 201
    assert (await client.post(f"/api/chat/{private['id']}/join", headers=bob.auth)).status_code == 403

    left = await client.post(f"/api/chat/{channel['id']}/leave", headers=bob.auth)
    assert left.status_code == 200
    assert channel["id"] not in [
        c["id"] for c in (await client.get("/api/workspace/chats", headers=bob.auth)).json()["data"]
    ]


async def test_the_first_to_join_a_public_channel_everyone_left_owns_it(client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    channel = await create_chat(client, alice, [], chat_type="PublicChannel", name="abandoned")
    assert (await client.post(f"/api/chat/{channel['id']}/leave", headers=alice.auth)).status_code == 200
    assert (await client.post(f"/api/chat/{channel['id']}/join", headers=bob.auth)).status_code == 200
    assert (await client.post(f"/api/chat/{channel['id']}/join", headers=carol.auth)).status_code == 200
    listed = (await client.get(f"/api/chat/{channel['id']}/members", headers=carol.auth)).json()["data"]
    assert {m["id"]: m["role"] for m in listed} == {bob.id: "owner", carol.id: "member"}
    assert (await client.get(f"/api/chat/{channel['id']}", headers=carol.auth)).json()["data"][
        "owner_id"
    ] == bob.id
    renamed = await client.patch(f"/api/chat/{channel['id']}", headers=bob.auth, json={"name": "revived"})
    assert renamed.status_code == 200, renamed.text
    refused = await client.patch(f"/api/chat/{channel['id']}", headers=carol.auth, json={"name": "mine"})
    assert refused.status_code == 403


async def test_direct_chats_never_change_members(client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    direct = await create_chat(client, alice, [bob], chat_type="Single", name="")
    grow = await add(client, alice, direct["id"], carol)
    assert grow.status_code == 400 and grow.json()["error"]["field"] == "user_ids"
    leave = await client.post(f"/api/chat/{direct['id']}/leave", headers=bob.auth)
    assert leave.status_code == 400
    rename = await client.patch(f"/api/chat/{direct['id']}", headers=alice.auth, json={"name": "x"})
    assert rename.status_code == 400 and rename.json()["error"]["field"] == "name"


async def test_rename_and_describe(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob], chat_type="Group", name="old")
    renamed = await client.patch(
        f"/api/chat/{chat['id']}", headers=alice.auth, json={"name": "  new  ", "description": "about"}
    )
    assert renamed.status_code == 200
    assert (renamed.json()["data"]["name"], renamed.json()["data"]["description"]) == ("new", "about")
    assert (
        await client.patch(f"/api/chat/{chat['id']}", headers=bob.auth, json={"name": "mine"})
    ).status_code == 403
    for body, field in [
        ({"name": "  "}, "name"),
        ({}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x" * 129}, "name"),
    ]:
        bad = await client.patch(f"/api/chat/{chat['id']}", headers=alice.auth, json=body)
        assert bad.status_code == 400, (body, bad.text)
        assert bad.json()["error"]["field"] == field
    assert (await client.get(f"/api/chat/{chat['id']}", headers=bob.auth)).json()["data"]["name"] == "new"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_ids": []},
        {"user_ids": "1"},
        {"user_ids": [0]},
        {"user_ids": [-5]},
        {"user_ids": [1], "x": 1},
    ],
)
async def test_bad_add_bodies_change_nothing(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob], chat_type="Group", name="g")
    response = await client.post(f"/api/chat/{chat['id']}/members", headers=alice.auth, json=body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
    assert await members(client, alice, chat["id"]) == [alice.id, bob.id]


async def test_people_from_another_workspace_cannot_be_added(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    stranger = await signup(client)
    chat = await create_chat(client, alice, [bob], chat_type="Group", name="g")
    response = await add(client, alice, chat["id"], stranger)
    assert response.status_code == 400 and response.json()["error"]["field"] == "user_ids"
    assert (await client.get(f"/api/chat/{chat['id']}/members", headers=stranger.auth)).status_code == 404


async def test_live_stream_follows_membership(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    chat = await create_chat(client, alice, [bob], chat_type="Group", name="live")
    http, carol_stream = await open_sse(stack, carol)
    try:
        await carol_stream.next("connected")
        await send(client, alice, chat["id"], "carol cannot see this")
        assert (await add(client, alice, chat["id"], carol)).status_code == 200
        _, added = await carol_stream.next("chat_member_added")
        assert added["chat_id"] == chat["id"] and added["user_id"] == carol.id
        sent = (await send(client, bob, chat["id"], "hi carol")).json()["data"]
        _, got = await carol_stream.next("new_message")
        assert got["id"] == sent["id"], "the first message carol gets is the one after she joined"

        await client.delete(f"/api/chat/{chat['id']}/members/{carol.id}", headers=alice.auth)
        _, removed = await carol_stream.next("chat_member_removed")
        assert removed == {"chat_id": chat["id"], "user_id": carol.id, "removed_by": alice.id}
        await send(client, bob, chat["id"], "after carol left")
        probe = await create_chat(client, alice, [carol], chat_type="Group", name="probe")
        await send(client, alice, probe["id"], "marker")
        # Events arrive in order: if the chat message had reached carol, it would come before the marker.
        _, next_message = await carol_stream.next("new_message")
        assert next_message["content"] == "marker"
    finally:
        await carol_stream.close()
        await http.aclose()


async def test_concurrent_joins_are_all_kept(client: httpx.AsyncClient) -> None:
    people = await team(client, 6)
    channel = await create_chat(client, people[0], [], chat_type="PublicChannel", name="busy")
    results = await asyncio.gather(
        *(client.post(f"/api/chat/{channel['id']}/join", headers=p.auth) for p in people[1:])
    )
    assert [r.status_code for r in results] == [200] * 5
    assert sorted(await members(client, people[0], channel["id"])) == sorted(p.id for p in people)


async def set_role(
    client: httpx.AsyncClient, actor: User, chat_id: int, user: User, role: str
) -> httpx.Response:
    return await client.patch(
        f"/api/chat/{chat_id}/members/{user.id}", headers=actor.auth, json={"role": role}
    )


async def roles(client: httpx.AsyncClient, actor: User, chat_id: int) -> dict[int, str]:
    response = await client.get(f"/api/chat/{chat_id}/members", headers=actor.auth)
    assert response.status_code == 200, response.text
    return {u["id"]: u["role"] for u in response.json()["data"]}


async def test_the_owner_makes_admins_who_then_manage_the_chat(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob, carol, dave = await team(client, 4)
    chat = await create_chat(client, alice, [bob, carol], chat_type="PrivateChannel", name="ops")
    assert await roles(client, bob, chat["id"]) == {alice.id: "owner", bob.id: "member", carol.id: "member"}
    # A member cannot manage the channel until the owner makes them an admin.
    assert (await add(client, bob, chat["id"], dave)).status_code == 403
    http, carol_stream = await open_sse(stack, carol)
    try:
        await carol_stream.next("connected")
        promoted = await set_role(client, alice, chat["id"], bob, "admin")
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["data"]["id"] == bob.id and promoted.json()["data"]["role"] == "admin"
        _, event = await carol_stream.next("chat_member_updated")
        assert event == {"chat_id": chat["id"], "user_id": bob.id, "role": "admin", "updated_by": alice.id}
    finally:
        await carol_stream.close()
        await http.aclose()
    assert await roles(client, carol, chat["id"]) == {alice.id: "owner", bob.id: "admin", carol.id: "member"}
    assert (await add(client, bob, chat["id"], dave)).status_code == 200
    removed = await client.delete(f"/api/chat/{chat['id']}/members/{dave.id}", headers=bob.auth)
    assert removed.status_code == 200
    # An admin does not hand out roles; only the owner does, and the owner's own role is fixed.
    by_admin = await set_role(client, bob, chat["id"], carol, "admin")
    assert by_admin.status_code == 403 and by_admin.json()["error"]["code"] == "forbidden"
    own = await set_role(client, alice, chat["id"], alice, "member")
    assert own.status_code == 403 and own.json()["error"]["code"] == "forbidden"
    # Back to member: the managing rights go with the role.
    assert (await set_role(client, alice, chat["id"], bob, "member")).status_code == 200
    assert (await add(client, bob, chat["id"], dave)).status_code == 403
    # When the owner leaves, an admin comes before earlier plain members.
    assert (await set_role(client, alice, chat["id"], carol, "admin")).status_code == 200
    assert (await client.post(f"/api/chat/{chat['id']}/leave", headers=alice.auth)).status_code == 200
    assert await roles(client, bob, chat["id"]) == {bob.id: "member", carol.id: "owner"}


async def test_role_changes_that_are_refused_change_nothing(client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    group = await create_chat(client, alice, [bob], chat_type="Group", name="g")
    direct = await create_chat(client, alice, [bob], chat_type="Single", name="")
    before = await roles(client, alice, group["id"])

    def refused(response: httpx.Response, status: int, code: str, field: str | None = None) -> None:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code and error.get("field") == field

    refused(await set_role(client, alice, group["id"], bob, "owner"), 400, "validation_error", "role")
    refused(await set_role(client, alice, group["id"], carol, "admin"), 404, "not_found")
    refused(await set_role(client, carol, group["id"], bob, "admin"), 403, "forbidden")
    refused(await set_role(client, alice, direct["id"], bob, "admin"), 400, "validation_error", "role")
    bad = await client.patch(f"/api/chat/{group['id']}/members/{bob.id}", headers=alice.auth, json={})
    refused(bad, 400, "validation_error", "role")
    assert (await client.post(f"/api/chat/{group['id']}/archive", headers=alice.auth)).status_code == 200
    refused(await set_role(client, alice, group["id"], bob, "admin"), 409, "conflict")
    assert await roles(client, alice, group["id"]) == before
