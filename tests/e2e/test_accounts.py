"""Sessions, passwords, sign-in limits, and people in several workspaces."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import User, create_chat, invite, signup, team, unique_email
from tests.sse import open_sse, send
from tests.stackutil import RunningStack

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse 1"


def from_address(stack: RunningStack, address: str) -> httpx.AsyncClient:
    """A client whose connections come from another loopback address, i.e. another client IP."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=stack.url, transport=transport, timeout=15)


async def signin(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/signin", json={"email": email, "password": password})


async def test_logout_all_ends_every_session(client: httpx.AsyncClient) -> None:
    user = await signup(client)
    email = user.session["user"]["email"]
    second = (await signin(client, email)).json()["data"]
    assert (await client.post("/api/logout-all", headers=user.auth)).status_code == 200
    for token in (user.refresh_token, second["refresh_token"]):
        refused = await client.post("/api/refresh", json={"refresh_token": token})
        assert refused.status_code == 401


async def test_logout_revokes_the_given_refresh_token(client: httpx.AsyncClient) -> None:
    user = await signup(client)
    assert (
        await client.post("/api/logout", headers=user.auth, json={"refresh_token": user.refresh_token})
    ).status_code == 200
    assert (await client.post("/api/refresh", json={"refresh_token": user.refresh_token})).status_code == 401


async def test_change_password(client: httpx.AsyncClient) -> None:
    user = await signup(client)
    email = user.session["user"]["email"]
    other_device = (await signin(client, email)).json()["data"]
    url = "/api/users/change-password"
    wrong = await client.post(
        url, headers=user.auth, json={"current_password": "nope nope", "new_password": "brand new pw"}
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_credentials"
    same = await client.post(
        url, headers=user.auth, json={"current_password": PASSWORD, "new_password": PASSWORD}
    )
    assert same.status_code == 400 and same.json()["error"]["field"] == "new_password"
    short = await client.post(
        url, headers=user.auth, json={"current_password": PASSWORD, "new_password": "short"}
    )
    assert short.status_code == 400 and short.json()["error"]["field"] == "new_password"

    changed = await client.post(
        url, headers=user.auth, json={"current_password": PASSWORD, "new_password": "brand new pw"}
    )
    assert changed.status_code == 200
    fresh = changed.json()["data"]
    assert (
        await client.post("/api/refresh", json={"refresh_token": other_device["refresh_token"]})
    ).status_code == 401
    assert (
        await client.post("/api/refresh", json={"refresh_token": fresh["refresh_token"]})
    ).status_code == 200
    assert (await signin(client, email)).status_code == 401
    assert (await signin(client, email, "brand new pw")).status_code == 200


async def test_failed_sign_ins_lock_the_account_for_a_while(stack: RunningStack) -> None:
    async with from_address(stack, "127.0.0.3") as http:
        victim = await signup(http)
        bystander = await signup(http)
        email = victim.session["user"]["email"]
        limit = int(stack.env["SIGNIN_FAILURES_PER_ACCOUNT"])
        for _ in range(limit):
            assert (await signin(http, email, "wrong password")).status_code == 401
        locked = await signin(http, email, "wrong password")
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "rate_limited"
        assert int(locked.headers["retry-after"]) > 0
        # Even the right password waits: otherwise the lock would not slow down guessing at all.
        assert (await signin(http, email)).status_code == 429
        assert (await signin(http, bystander.session["user"]["email"])).status_code == 200


async def test_sign_ins_are_limited_per_client_address(stack: RunningStack) -> None:
    limit = int(stack.env["SIGNIN_PER_IP"])
    async with from_address(stack, "127.0.0.2") as http:
        for i in range(limit):
            response = await signin(http, unique_email(f"probe{i}-"), "whatever pw")
            assert response.status_code == 401, response.text
        # A client cannot escape by claiming another address: the gateway replaces X-Forwarded-For.
        limited = await http.post(
            "/api/signin",
            json={"email": "x@example.test", "password": "whatever"},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert limited.status_code == 429
        assert limited.headers["x-ratelimit-remaining"] == "0"
    async with from_address(stack, "127.0.0.4") as other:
        assert (await signin(other, "x@example.test", "whatever")).status_code == 401


async def test_people_can_belong_to_several_workspaces(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob = await team(client)
    home_chat = await create_chat(client, alice, [bob], chat_type="Group", name="home")

    created = await client.post("/api/workspaces", headers=alice.auth, json={"name": "Side project"})
    assert created.status_code == 201
    side = User(created.json()["data"])
    assert side.workspace_id != alice.workspace_id and side.id == alice.id
    listed = (await client.get("/api/workspaces", headers=side.auth)).json()["data"]
    assert {(w["id"], w["role"]) for w in listed} == {
        (alice.workspace_id, "owner"),
        (side.workspace_id, "owner"),
    }

    # Everything is scoped to the token's workspace.
    assert (await client.get(f"/api/chat/{home_chat['id']}", headers=side.auth)).status_code == 404
    assert (await client.get("/api/workspace/chats", headers=side.auth)).json()["data"] == []
    side_users = {
        u["id"] for u in (await client.get("/api/users", headers=side.auth)).json()["data"] if not u["is_bot"]
    }
    assert side_users == {alice.id}

    code = await invite(client, side)
    joined = await client.post("/api/workspaces/join", headers=bob.auth, json={"invite_code": code})
    assert joined.status_code == 200
    bob_side = User(joined.json()["data"])
    assert bob_side.workspace_id == side.workspace_id

    back = await client.post(f"/api/workspaces/{alice.workspace_id}/switch", headers=side.auth)
    assert back.status_code == 200
    assert User(back.json()["data"]).workspace_id == alice.workspace_id
    outsider = await signup(client)
    assert (
        await client.post(f"/api/workspaces/{side.workspace_id}/switch", headers=outsider.auth)
    ).status_code == 404

    # A stream shows the events of its token's workspace only.
    side_chat = await create_chat(client, side, [bob_side], chat_type="Group", name="side")
    http, stream = await open_sse(stack, bob)  # bob's home-workspace token
    try:
        await stream.next("connected")
        await send(client, side, side_chat["id"], "side workspace news")
        home = (await send(client, alice, home_chat["id"], "home news")).json()["data"]
        _, first = await stream.next("new_message")
        assert first["id"] == home["id"]
    finally:
        await stream.close()
        await http.aclose()


async def test_invites_with_limits_listing_and_revoking(client: httpx.AsyncClient) -> None:
    owner = await signup(client, workspace_name="Limited")
    once = await client.post(
        "/api/workspace/invites", headers=owner.auth, json={"max_uses": 1, "expires_in_hours": 2}
    )
    assert once.status_code == 201
    code = once.json()["data"]["code"]
    assert once.json()["data"]["max_uses"] == 1
    await signup(client, invite_code=code)
    used_up = await client.post(
        "/api/signup",
        json={"email": unique_email(), "password": PASSWORD, "fullname": "Late", "invite_code": code},
    )
    assert used_up.status_code == 400 and used_up.json()["error"]["field"] == "invite_code"

    open_code = await invite(client, owner)
    listed = (await client.get("/api/workspace/invites", headers=owner.auth)).json()["data"]
    assert {i["code"]: i["uses"] for i in listed} == {code: 1, open_code: 0}
    assert (await client.delete(f"/api/workspace/invites/{open_code}", headers=owner.auth)).status_code == 200
    revoked = await client.post(
        "/api/signup",
        json={"email": unique_email(), "password": PASSWORD, "fullname": "X", "invite_code": open_code},
    )
    assert revoked.status_code == 400
    for body in ({"max_uses": 0}, {"expires_in_hours": 0}, {"max_uses": "3"}, {"other": 1}):
        bad = await client.post("/api/workspace/invites", headers=owner.auth, json=body)
        assert bad.status_code == 400, body


async def test_owner_promotes_admins_who_can_invite(client: httpx.AsyncClient) -> None:
    owner, member, other = await team(client, 3)
    assert (await client.post("/api/workspace/invites", headers=member.auth, json={})).status_code == 403
    refused = await client.patch(
        f"/api/workspace/members/{other.id}", headers=member.auth, json={"role": "admin"}
    )
    assert refused.status_code == 403
    promoted = await client.patch(
        f"/api/workspace/members/{member.id}", headers=owner.auth, json={"role": "admin"}
    )
    assert promoted.status_code == 200
    assert promoted.json()["data"]["role"] == "admin"
    roles = {u["id"]: u["role"] for u in (await client.get("/api/users", headers=other.auth)).json()["data"]}
    assert (roles[owner.id], roles[member.id], roles[other.id]) == ("owner", "admin", "member")
    assert (await client.post("/api/workspace/invites", headers=member.auth, json={})).status_code == 201
    owner_fixed = await client.patch(
        f"/api/workspace/members/{owner.id}", headers=owner.auth, json={"role": "member"}
    )
    assert owner_fixed.status_code == 403
    bad_role = await client.patch(
        f"/api/workspace/members/{other.id}", headers=owner.auth, json={"role": "owner"}
    )
    assert bad_role.status_code == 400 and bad_role.json()["error"]["field"] == "role"
    unknown = await client.patch(
        "/api/workspace/members/999999999", headers=owner.auth, json={"role": "admin"}
    )
    assert unknown.status_code == 404
