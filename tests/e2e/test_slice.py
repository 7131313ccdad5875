"""The first end-to-end slice through the gateway, against the real stack."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from fechatter_core.security import issue_access_token
from fechatter_core.settings import AuthSettings
from tests.conftest import create_chat, invite, signup, team
from tests.sse import open_sse, send
from tests.stackutil import RunningStack

pytestmark = pytest.mark.e2e


async def test_signup_signin_me(client: httpx.AsyncClient) -> None:
    user = await signup(client, fullname="Ada Lovelace", workspace_name="Analytical")
    assert user.session["token_type"] == "Bearer"
    assert user.session["workspace"]["name"] == "Analytical"
    assert user.session["workspace"]["owner_id"] == user.id
    me = await client.get("/api/users/me", headers=user.auth)
    assert me.status_code == 200
    assert me.json() == {"success": True, "data": user.session["user"]}

    email = user.session["user"]["email"]
    signin = await client.post("/api/signin", json={"email": email.upper(), "password": "correct horse 1"})
    assert signin.status_code == 200
    assert signin.json()["data"]["user"]["id"] == user.id

    wrong_password = await client.post("/api/signin", json={"email": email, "password": "wrong password"})
    unknown_email = await client.post(
        "/api/signin", json={"email": "nobody@example.test", "password": "x" * 9}
    )
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["error"]["code"] == "invalid_credentials"

    again = await client.post(
        "/api/signup", json={"email": email.title(), "password": "another pass", "fullname": "Copy"}
    )
    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "email_taken",
        "message": "An account with this email already exists",
        "field": "email",
    }


async def test_openapi_describes_the_api(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200, response.text
    spec = response.json()
    assert {"/api/signup", "/api/chat/{chat_id}/messages", "/api/workspace/chats"} <= set(spec["paths"])
    assert (await client.get("/api/docs/openapi.json")).status_code == 200


async def test_invites_join_the_workspace(client: httpx.AsyncClient) -> None:
    owner = await signup(client, workspace_name="Invites")
    code = await invite(client, owner)
    member = await signup(client, invite_code=code)
    assert member.workspace_id == owner.workspace_id

    users = (await client.get("/api/users", headers=member.auth)).json()["data"]
    ids = {u["id"] for u in users}
    assert {owner.id, member.id} <= ids
    assert [u for u in users if u["is_bot"]], "the workspace's bot user is listed"

    forbidden = await client.post("/api/workspace/invites", headers=member.auth, json={})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"

    bad = await client.post(
        "/api/signup",
        json={
            "email": "late@example.test",
            "password": "long enough",
            "fullname": "Late",
            "invite_code": "nope",
        },
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "invite_code"
    # Nothing was created by the refused signup: the email is still free.
    retry = await client.post(
        "/api/signup", json={"email": "late@example.test", "password": "long enough", "fullname": "Late"}
    )
    assert retry.status_code == 201


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient) -> None:
    user = await signup(client)
    first = await client.post("/api/refresh", json={"refresh_token": user.refresh_token})
    assert first.status_code == 200
    rotated = first.json()["data"]
    assert rotated["refresh_token"] != user.refresh_token
    me = await client.get("/api/users/me", headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert me.status_code == 200

    # Within the grace window a reuse is refused but the new token keeps working (two tabs racing).
    raced = await client.post("/api/refresh", json={"refresh_token": user.refresh_token})
    assert raced.status_code == 401
    await asyncio.sleep(1.2)
    stolen = await client.post("/api/refresh", json={"refresh_token": user.refresh_token})
    assert stolen.status_code == 401
    # The reuse after the window revoked every token of the family, the newest included.
    after = await client.post("/api/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "unauthorized"


async def test_chats_are_created_listed_and_guarded(client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    chat = await create_chat(client, alice, [bob], name="design", description="pixels")
    assert chat["chat_type"] == "PrivateChannel"
    assert chat["member_ids"] == sorted([alice.id, bob.id])
    assert chat["owner_id"] == alice.id and chat["last_seq"] == 0 and chat["unread_count"] == 0

    listed = (await client.get("/api/workspace/chats", headers=bob.auth)).json()["data"]
    assert [c["id"] for c in listed] == [chat["id"]]
    assert (await client.get("/api/workspace/chats", headers=carol.auth)).json()["data"] == []

    assert (await client.get(f"/api/chat/{chat['id']}", headers=bob.auth)).status_code == 200
    denied = await client.get(f"/api/chat/{chat['id']}", headers=carol.auth)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    missing = await client.get("/api/chat/999999999", headers=carol.auth)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    outsider = await signup(client)
    assert (await client.get(f"/api/chat/{chat['id']}", headers=outsider.auth)).status_code == 404
    foreign = await client.post(
        "/api/workspace/chats",
        headers=outsider.auth,
        json={"name": "x", "chat_type": "Group", "members": [alice.id]},
    )
    assert foreign.status_code == 400 and foreign.json()["error"]["field"] == "members"

    direct = await client.post(
        "/api/workspace/chats",
        headers=alice.auth,
        json={"name": "", "chat_type": "Single", "members": [carol.id]},
    )
    assert direct.status_code == 201
    same = await client.post(
        "/api/workspace/chats",
        headers=carol.auth,
        json={"name": "", "chat_type": "Single", "members": [alice.id]},
    )
    assert same.status_code == 200
    assert same.json()["data"]["id"] == direct.json()["data"]["id"]


async def test_messages_seq_idempotency_and_paging(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    sent = [await send(client, alice if i % 2 else bob, chat["id"], f"message {i}") for i in range(7)]
    assert [r.status_code for r in sent] == [201] * 7
    assert [r.json()["data"]["seq"] for r in sent] == list(range(1, 8))

    key = {"Idempotency-Key": "retry-me"}
    original = await client.post(
        f"/api/chat/{chat['id']}/messages", headers={**alice.auth, **key}, json={"content": "  once  "}
    )
    assert original.status_code == 201
    assert original.json()["data"]["content"] == "once"
    replay = await client.post(
        f"/api/chat/{chat['id']}/messages",
        headers=alice.auth,
        json={"content": "once", "idempotency_key": "retry-me"},
    )
    assert replay.status_code == 200
    assert replay.json()["data"] == original.json()["data"]
    clash = await client.post(
        f"/api/chat/{chat['id']}/messages", headers={**alice.auth, **key}, json={"content": "different"}
    )
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_conflict"
    # The same key from another sender is another message.
    other = await client.post(
        f"/api/chat/{chat['id']}/messages", headers={**bob.auth, **key}, json={"content": "once"}
    )
    assert other.status_code == 201 and other.json()["data"]["seq"] == 9

    latest = (await client.get(f"/api/chat/{chat['id']}/messages?limit=3", headers=bob.auth)).json()
    assert [m["seq"] for m in latest["data"]] == [7, 8, 9] and latest["meta"]["has_more"] is True
    older = (await client.get(f"/api/chat/{chat['id']}/messages?limit=5&before=7", headers=bob.auth)).json()
    assert [m["seq"] for m in older["data"]] == [2, 3, 4, 5, 6] and older["meta"]["has_more"] is True
    newer = (await client.get(f"/api/chat/{chat['id']}/messages?limit=5&after=6", headers=bob.auth)).json()
    assert [m["seq"] for m in newer["data"]] == [7, 8, 9] and newer["meta"]["has_more"] is False

    listed = (await client.get("/api/workspace/chats", headers=bob.auth)).json()["data"][0]
    assert listed["last_seq"] == 9
    assert listed["last_message"]["seq"] == 9
    # Bob's own last message (seq 9) moved his read position past everything alice sent.
    assert listed["unread_count"] == 0
    listed_for_alice = (await client.get("/api/workspace/chats", headers=alice.auth)).json()["data"][0]
    assert listed_for_alice["unread_count"] == 1  # bob's seq 9, after alice's last send at seq 8


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": ""}, "content"),
        ({"content": "   "}, "content"),
        ({"content": "x" * 4001}, "content"),
        ({"content": 5}, "content"),
        ({"content": "hi", "reply_to": 999999999}, "reply_to"),
        ({"content": "hi", "reply_to": -1}, "reply_to"),
        ({"content": "hi", "files": [123]}, "files"),
        ({"content": "hi", "unknown": 1}, None),
        ({"content": "hi", "idempotency_key": ""}, "idempotency_key"),
    ],
)
async def test_bad_message_bodies_are_refused_and_change_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], field: str | None
) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    response = await client.post(f"/api/chat/{chat['id']}/messages", headers=alice.auth, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    if field:
        assert error["field"] == field
    assert (await client.get(f"/api/chat/{chat['id']}", headers=alice.auth)).json()["data"]["last_seq"] == 0


async def test_malformed_requests_get_the_envelope(client: httpx.AsyncClient) -> None:
    user = await signup(client)
    broken = await client.post(
        "/api/signup", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "bad_request"
    assert broken.headers.get("x-request-id")
    no_token = await client.get("/api/users/me")
    assert no_token.status_code == 401 and no_token.json()["error"]["code"] == "unauthorized"
    bad_token = await client.get("/api/users/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert bad_token.status_code == 401
    huge = await client.get("/api/chat/99999999999999999999999/messages", headers=user.auth)
    assert huge.status_code in (400, 404) and huge.json()["success"] is False
    bad_limit = await client.get("/api/chat/1/messages?limit=0", headers=user.auth)
    assert bad_limit.status_code == 400 and bad_limit.json()["error"]["field"] == "limit"
    echoed = await client.get("/api/users/me", headers={**user.auth, "x-request-id": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"


async def test_concurrent_sends_get_gap_free_seq_and_one_winner_per_key(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    results = await asyncio.gather(
        *(send(client, alice if i % 2 else bob, chat["id"], f"c{i}") for i in range(20))
    )
    assert sorted(r.json()["data"]["seq"] for r in results) == list(range(1, 21))

    same_key = await asyncio.gather(
        *(send(client, alice, chat["id"], "only once", idempotency_key="burst") for _ in range(30))
    )
    assert sorted(r.status_code for r in same_key) == [200] * 29 + [201]
    assert len({r.json()["data"]["id"] for r in same_key}) == 1
    page = (await client.get(f"/api/chat/{chat['id']}/messages?limit=200", headers=bob.auth)).json()["data"]
    assert [m["seq"] for m in page] == list(range(1, 22))


async def test_sse_delivers_new_messages_within_a_second(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    http_b, stream_b = await open_sse(stack, bob)
    http_a, stream_a = await open_sse(stack, alice, access_token=alice.token)
    try:
        await stream_b.next("connected")
        started = time.monotonic()
        sent = (await send(client, alice, chat["id"], "live hello")).json()["data"]
        event_id, data = await stream_b.next("new_message", timeout=1.0)
        assert time.monotonic() - started < 1.0
        assert data == sent and event_id and event_id.isdigit()
        # The sender's other devices get it too.
        _, own = await stream_a.next("new_message")
        assert own["id"] == sent["id"]
    finally:
        await stream_a.close()
        await stream_b.close()
        await http_a.aclose()
        await http_b.aclose()


async def test_sse_resume_replays_exactly_what_was_missed(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    http_b, stream = await open_sse(stack, bob)
    await stream.next("connected")
    await send(client, alice, chat["id"], "before")
    last_id, _ = await stream.next("new_message")
    await stream.close()
    await http_b.aclose()

    missed = [(await send(client, alice, chat["id"], f"missed {i}")).json()["data"] for i in range(10)]
    http_b, stream = await open_sse(stack, bob, last_event_id=str(last_id))
    try:
        got = [await stream.next("new_message") for _ in range(10)]
        assert [data["id"] for _, data in got] == [m["id"] for m in missed]
        ids = [int(event_id) for event_id, _ in got]
        assert ids == sorted(ids) and len(set(ids)) == 10 and ids[0] > int(last_id)
        live = (await send(client, alice, chat["id"], "after resume")).json()["data"]
        _, data = await stream.next("new_message")
        assert data["id"] == live["id"]
        # Nothing was delivered twice.
        assert stream.events.empty()
    finally:
        await stream.close()
        await http_b.aclose()


async def test_sse_refuses_bad_credentials_and_resyncs_unknown_ids(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        assert (await http.get("/sse")).status_code == 401
        assert (await http.get("/events", params={"access_token": "nope"})).status_code == 401
    user = await signup(client)
    bad = await client.get("/sse", headers={**user.auth, "Last-Event-ID": "abc"})
    assert bad.status_code == 400
    http, stream = await open_sse(stack, user, last_event_id="999999999")
    try:
        _, data = await stream.next("resync_required")
        assert data["reason"] == "history_expired"
    finally:
        await stream.close()
        await http.aclose()


async def test_sse_refusals_are_in_the_envelope_and_head_opens_no_stream(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        missing = await http.get("/sse")
        assert missing.status_code == 401
        assert missing.json()["success"] is False and missing.json()["error"]["code"] == "unauthorized"
        assert missing.headers.get("x-request-id")
    user = await signup(client)
    posted = await client.post("/sse", headers=user.auth)
    assert posted.status_code == 405 and posted.headers["allow"] == "GET"
    assert posted.json()["error"]["code"] == "method_not_allowed"
    bad = await client.get("/events", params={"last_event_id": "-1"}, headers=user.auth)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "last_event_id"

    # HEAD answers with a stream's headers at once and opens nothing: the user does not come online.
    head = await client.head("/sse", headers=user.auth)
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/event-stream")
    presence = (await client.get("/api/presence", headers=user.auth)).json()["data"]
    assert {p["user_id"]: p["status"] for p in presence}[user.id] == "offline"


async def test_sse_ends_with_token_expired_when_the_access_token_lapses(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    user = await signup(client)
    settings = AuthSettings(jwt_secret=stack.secrets()["jwt_secret"], access_ttl_seconds=3)
    short = issue_access_token(settings, user.id, user.workspace_id)
    async with (
        httpx.AsyncClient(base_url=stack.url, timeout=httpx.Timeout(10, read=30)) as http,
        http.stream("GET", "/sse", headers={"Authorization": f"Bearer {short}"}) as response,
    ):
        assert response.status_code == 200
        started = time.monotonic()
        lines = [line async for line in response.aiter_lines()]  # until the server ends the stream
    ended_after = time.monotonic() - started
    assert "event: token_expired" in lines, lines
    assert lines[lines.index("event: token_expired") + 1].startswith("data: ")
    assert 1.5 < ended_after < 8, ended_after


async def test_sse_sends_ping_comments(stack: RunningStack, client: httpx.AsyncClient) -> None:
    user = await signup(client)
    http, stream = await open_sse(stack, user)
    try:
        await asyncio.sleep(2.5)  # the test stack pings every 2 s (SSE_PING_SECONDS)
        assert ": ping" in stream.comments
    finally:
        await stream.close()
        await http.aclose()
