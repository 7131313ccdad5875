"""Removing someone from a workspace, and leaving one: who may, what goes with it, and coming back."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import User, create_chat, invite, signup, team
from tests.sse import open_sse, send
from tests.stackutil import RunningStack

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse 1"


async def remove(client: httpx.AsyncClient, by: User, user_id: int) -> httpx.Response:
    return await client.delete(f"/api/workspace/members/{user_id}", headers=by.auth)


async def make_admin(client: httpx.AsyncClient, owner: User, user: User) -> None:
    response = await client.patch(
        f"/api/workspace/members/{user.id}", headers=owner.auth, json={"role": "admin"}
    )
    assert response.status_code == 200, response.text


async def member_ids(client: httpx.AsyncClient, user: User) -> set[int]:
    response = await client.get("/api/users", headers=user.auth)
    assert response.status_code == 200, response.text
    return {u["id"] for u in response.json()["data"]}


async def bot_id(client: httpx.AsyncClient, user: User) -> int:
    users = (await client.get("/api/users", headers=user.auth)).json()["data"]
    return next(u["id"] for u in users if u["is_bot"])


async def test_who_may_remove_whom(client: httpx.AsyncClient) -> None:
    owner, admin, other_admin, member, other_member = await team(client, 5)
    await make_admin(client, owner, admin)
    await make_admin(client, owner, other_admin)

    refusals = [
        (member, other_member, 403, "a plain member removes someone"),
        (admin, other_admin, 403, "an admin removes an admin"),
        (admin, owner, 403, "an admin removes the owner"),
        (owner, owner, 403, "the owner leaves"),
        (owner, None, 403, "the bot is removed"),
    ]
    for by, target, status, why in refusals:
        target_id = target.id if target else await bot_id(client, owner)
        response = await remove(client, by, target_id)
        assert response.status_code == status, why
        assert response.json()["error"]["code"] == "forbidden", why
    assert await member_ids(client, owner) >= {owner.id, admin.id, other_admin.id, member.id, other_member.id}

    assert (await remove(client, admin, member.id)).status_code == 200  # an admin removes a member
    assert (await remove(client, owner, other_admin.id)).status_code == 200  # the owner removes an admin
    assert (await remove(client, other_member, other_member.id)).status_code == 200  # a member leaves
    assert await member_ids(client, owner) == {owner.id, admin.id, await bot_id(client, owner)}
    again = await remove(client, owner, member.id)
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


async def test_a_removed_member_leaves_the_chats_but_direct_messages_stay(client: httpx.AsyncClient) -> None:
    owner, leaver, stayer = await team(client, 3)
    channel = await create_chat(client, owner, [leaver, stayer], name="general")
    owned = await create_chat(client, leaver, [owner, stayer], name="leaver's own", chat_type="Group")
    dm = (
        await client.post(
            "/api/workspace/chats",
            headers=stayer.auth,
            json={"name": "", "chat_type": "Single", "members": [leaver.id]},
        )
    ).json()["data"]
    said = (await send(client, leaver, channel["id"], "my last words")).json()["data"]
    assert (await send(client, leaver, dm["id"], "between us")).status_code == 201

    removed = await remove(client, owner, leaver.id)
    assert removed.status_code == 200, removed.text
    assert removed.json()["data"] == {
        "user_id": leaver.id,
        "chats_left": sorted([channel["id"], owned["id"]]),
    }

    members = (await client.get(f"/api/chat/{channel['id']}/members", headers=owner.auth)).json()["data"]
    assert leaver.id not in {m["id"] for m in members}
    # The chat they owned passed to its earliest remaining member (its owner-to-be has the role too).
    owned_now = (await client.get(f"/api/chat/{owned['id']}", headers=stayer.auth)).json()["data"]
    assert owned_now["owner_id"] == owner.id and leaver.id not in owned_now["member_ids"]
    roles = (await client.get(f"/api/chat/{owned['id']}/members", headers=stayer.auth)).json()["data"]
    assert {m["id"]: m["role"] for m in roles}[owner.id] == "owner"
    # Their messages stay where they were, and the direct message stays whole for the other person.
    history = (await client.get(f"/api/chat/{channel['id']}/messages", headers=stayer.auth)).json()["data"]
    assert said["id"] in {m["id"] for m in history}
    dm_now = (await client.get(f"/api/chat/{dm['id']}", headers=stayer.auth)).json()["data"]
    assert set(dm_now["member_ids"]) == {leaver.id, stayer.id}
    dm_history = (await client.get(f"/api/chat/{dm['id']}/messages", headers=stayer.auth)).json()["data"]
    assert [m["content"] for m in dm_history] == ["between us"]
    # Their name stays known for those messages.
    former = (await client.get("/api/workspace/former-members", headers=stayer.auth)).json()["data"]
    assert [(f["id"], f["fullname"], f["removed_by"]) for f in former] == [(leaver.id, "Test User", owner.id)]
    # Nobody can add them back to a chat, or start a chat with them, until they are back in the workspace.
    refused = await client.post(
        f"/api/chat/{channel['id']}/members", headers=owner.auth, json={"user_ids": [leaver.id]}
    )
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "user_ids"
    group = {"name": "again", "chat_type": "Group", "members": [leaver.id]}
    refused = await client.post("/api/workspace/chats", headers=owner.auth, json=group)
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "members"


async def test_a_removed_member_has_no_session_left_in_the_workspace(client: httpx.AsyncClient) -> None:
    owner, leaver = await team(client, 2)
    email = leaver.session["user"]["email"]
    second = (await client.post("/api/signin", json={"email": email, "password": PASSWORD})).json()["data"]
    assert (await remove(client, owner, leaver.id)).status_code == 200
    for token in (leaver.refresh_token, second["refresh_token"]):
        refused = await client.post("/api/refresh", json={"refresh_token": token})
        assert refused.status_code == 401
    # The access token they still hold opens nothing of the workspace beyond their direct messages: not
    # its people, its public channels, presence, uploads, nor a new session through a password change.
    channel = await create_chat(client, owner, [], name="open to all", chat_type="PublicChannel")
    refused = {
        "people": await client.get("/api/users", headers=leaver.auth),
        "channels": await client.get("/api/workspace/channels", headers=leaver.auth),
        "a channel": await client.get(f"/api/chat/{channel['id']}", headers=leaver.auth),
        "its members": await client.get(f"/api/chat/{channel['id']}/members", headers=leaver.auth),
        "presence": await client.get("/api/presence", headers=leaver.auth),
        "away": await client.post("/api/presence", headers=leaver.auth, json={"status": "away"}),
        "online": await client.get("/online-users", headers=leaver.auth),
        "upload": await client.post(
            "/api/files", headers=leaver.auth, files={"file": ("a.txt", b"hello", "text/plain")}
        ),
        "new chat": await client.post(
            "/api/workspace/chats",
            headers=leaver.auth,
            json={"name": "mine", "chat_type": "PublicChannel", "members": []},
        ),
        "password": await client.post(
            "/api/users/change-password",
            headers=leaver.auth,
            json={"current_password": PASSWORD, "new_password": "another pw 1"},
        ),
    }
    assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 403)
    assert all(r.json()["error"]["code"] == "forbidden" for r in refused.values())
    assert (await client.get("/api/users/me", headers=leaver.auth)).status_code == 401
    # The refused password change changed nothing.
    kept = await client.post("/api/signin", json={"email": email, "password": "another pw 1"})
    assert kept.status_code == 401
    # With no workspace left, signing in says why, and only once the password is right.
    wrong = await client.post("/api/signin", json={"email": email, "password": "not the password"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_credentials"
    right = await client.post("/api/signin", json={"email": email, "password": PASSWORD})
    assert right.status_code == 403 and right.json()["error"]["code"] == "no_workspace"


async def test_an_invite_brings_a_removed_member_back(client: httpx.AsyncClient) -> None:
    owner, leaver = await team(client, 2)
    email = leaver.session["user"]["email"]
    assert (await remove(client, owner, leaver.id)).status_code == 200
    code = await invite(client, owner)
    back = await client.post("/api/signin", json={"email": email, "password": PASSWORD, "invite_code": code})
    assert back.status_code == 200, back.text
    session = back.json()["data"]
    assert session["workspace"]["id"] == owner.workspace_id and session["user"]["id"] == leaver.id
    assert leaver.id in await member_ids(client, owner)
    assert (await client.get("/api/workspace/former-members", headers=owner.auth)).json()["data"] == []
    # The code again, from a member, goes there without using the invite twice; without it, they land
    # in the same workspace.
    for body in ({"invite_code": code}, {}):
        again = await client.post("/api/signin", json={"email": email, "password": PASSWORD, **body})
        assert again.status_code == 200 and again.json()["data"]["workspace"]["id"] == owner.workspace_id
    invites = (await client.get("/api/workspace/invites", headers=owner.auth)).json()["data"]
    assert next(i for i in invites if i["code"] == code)["uses"] == 1
    bad = await client.post("/api/signin", json={"email": email, "password": PASSWORD, "invite_code": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "invite_code"


async def test_leaving_keeps_the_other_workspaces(client: httpx.AsyncClient) -> None:
    owner, member = await team(client, 2)
    elsewhere = await signup(client, workspace_name="Elsewhere")
    joined = await client.post(
        "/api/workspaces/join", headers=member.auth, json={"invite_code": await invite(client, elsewhere)}
    )
    assert joined.status_code == 200
    assert (await remove(client, member, member.id)).status_code == 200
    former = (await client.get("/api/workspace/former-members", headers=owner.auth)).json()["data"]
    assert [(f["id"], f["removed_by"]) for f in former] == [(member.id, None)]
    email = member.session["user"]["email"]
    again = await client.post("/api/signin", json={"email": email, "password": PASSWORD})
    assert again.status_code == 200
    assert again.json()["data"]["workspace"]["id"] == elsewhere.workspace_id
    listed = (
        await client.get(
            "/api/workspaces", headers={"Authorization": f"Bearer {again.json()['data']['access_token']}"}
        )
    ).json()
    assert [w["id"] for w in listed["data"]] == [elsewhere.workspace_id]


async def test_the_removed_persons_stream_is_told_and_ends(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    owner, leaver, stayer = await team(client, 3)
    channel = await create_chat(client, owner, [leaver, stayer])
    http, stream = await open_sse(stack, leaver)
    watcher_http, watcher = await open_sse(stack, stayer)
    try:
        await stream.next("connected")
        await watcher.next("connected")
        assert (await remove(client, owner, leaver.id)).status_code == 200
        _, removed = await stream.next("workspace_member_removed")
        assert removed == {"workspace_id": owner.workspace_id, "user_id": leaver.id, "removed_by": owner.id}
        _, left_chat = await watcher.next("chat_member_removed")
        assert left_chat["chat_id"] == channel["id"] and left_chat["user_id"] == leaver.id
        # Nothing of the workspace reaches the removed person's stream after that: it has ended, and the
        # access token they still hold opens no other.
        await stream.wait_ended(timeout=5)
        refused = await client.get("/sse", headers=leaver.auth)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    finally:
        await stream.close()
        await http.aclose()
        await watcher.close()
        await watcher_http.aclose()


async def test_adding_someone_while_they_are_removed_never_leaves_them_in_a_chat(
    client: httpx.AsyncClient,
) -> None:
    owner, admin = (await team(client, 2))[:2]
    await make_admin(client, owner, admin)
    for _ in range(5):
        target = await signup(client, invite_code=await invite(client, owner))
        chats = [
            await create_chat(client, owner, [admin], name=f"room {i}", chat_type="Group") for i in range(3)
        ]
        adds = [
            client.post(f"/api/chat/{c['id']}/members", headers=admin.auth, json={"user_ids": [target.id]})
            for c in chats
        ]
        results = await asyncio.gather(remove(client, owner, target.id), *adds)
        assert results[0].status_code == 200, results[0].text
        assert all(r.status_code in (200, 400) for r in results[1:]), [r.text for r in results[1:]]
        for chat in chats:
            now = (await client.get(f"/api/chat/{chat['id']}", headers=owner.auth)).json()["data"]
            assert target.id not in now["member_ids"]


async def test_joining_several_times_at_once_joins_once(client: httpx.AsyncClient) -> None:
    """Two tabs joining with one invite, or with two invites to the same workspace."""
    owner = await signup(client, workspace_name="Joined")
    visitor = await signup(client, workspace_name="Home")
    codes = [await invite(client, owner), await invite(client, owner)]
    joins = await asyncio.gather(
        *(
            client.post("/api/workspaces/join", headers=visitor.auth, json={"invite_code": codes[i % 2]})
            for i in range(6)
        )
    )
    assert [r.status_code for r in joins] == [200] * 6, [r.text for r in joins]
    invites = (await client.get("/api/workspace/invites", headers=owner.auth)).json()["data"]
    assert sum(i["uses"] for i in invites if i["code"] in codes) == 1
    assert visitor.id in await member_ids(client, owner)
