"""What a member's stream carries: every change of their chats, typing and presence (real stack)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.conftest import User, create_chat, signup, team
from tests.realtime import quiet, stream
from tests.sse import SseReader, send
from tests.stackutil import RunningStack


async def test_a_member_sees_every_change_of_the_chat(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    chat = await create_chat(client, alice, [bob])
    cid = chat["id"]
    async with stream(stack, bob) as b:
        await b.next("connected")
        from_alice = (await send(client, alice, cid, "from alice")).json()["data"]
        _, got = await b.next("new_message")
        assert got == from_alice
        read = await client.post(f"/api/chat/{cid}/read", headers=bob.auth, json={"seq": 1})
        assert read.status_code == 200
        _, got = await b.next("message_read")
        assert got == {"chat_id": cid, "user_id": bob.id, "last_read_seq": 1}
        own = (await send(client, bob, cid, "from bob")).json()["data"]
        _, got = await b.next("new_message")
        assert got == own  # the sender's other devices

        edited = await client.patch(
            f"/api/chat/{cid}/messages/{from_alice['id']}", headers=alice.auth, json={"content": "edited"}
        )
        assert edited.status_code == 200
        _, got = await b.next("message_updated")
        assert got["id"] == from_alice["id"] and got["content"] == "edited"

        deleted = await client.delete(f"/api/chat/{cid}/messages/{from_alice['id']}", headers=alice.auth)
        assert deleted.status_code == 200
        _, got = await b.next("message_deleted")
        assert got["id"] == from_alice["id"] and got["deleted"] is True

        added = await client.post(
            f"/api/chat/{cid}/members", headers=alice.auth, json={"user_ids": [carol.id]}
        )
        assert added.status_code == 200
        _, got = await b.next("chat_member_added")
        assert got["chat_id"] == cid and got["user_id"] == carol.id
        removed = await client.delete(f"/api/chat/{cid}/members/{carol.id}", headers=alice.auth)
        assert removed.status_code == 200
        _, got = await b.next("chat_member_removed")
        assert got == {**got, "chat_id": cid, "user_id": carol.id}

        # Bob leaves: he learns it, and then hears nothing more of the chat.
        left = await client.delete(f"/api/chat/{cid}/members/{bob.id}", headers=bob.auth)
        assert left.status_code == 200
        _, got = await b.next("chat_member_removed")
        assert got["user_id"] == bob.id
        await send(client, alice, cid, "after bob left")
        later = await quiet(b, 1.5)
        assert [e for e in later if e[1] == "new_message"] == []


async def test_typing_starts_once_and_stops_on_send(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    chat = await create_chat(client, alice, [bob])
    async with stream(stack, bob) as b, stream(stack, alice) as a:
        await b.next("connected")
        await a.next("connected")
        # Every keystroke calls the route; only the first is announced.
        answers = [await client.post(f"/api/chat/{chat['id']}/typing", headers=alice.auth) for _ in range(5)]
        assert [r.status_code for r in answers] == [200] * 5
        assert [r.json()["data"]["announced"] for r in answers] == [True, False, False, False, False]
        event_id, got = await b.next("typing_started")
        assert got == {"chat_id": chat["id"], "user_id": alice.id}
        assert event_id is None  # ephemeral: never part of the resumable log

        sent = (await send(client, alice, chat["id"], "done typing")).json()["data"]
        # The stop goes straight out; the message through the outbox and the log: either may come first.
        seen: dict[str, object] = {}
        while len(seen) < 2:
            _, name, data = await asyncio.wait_for(b.events.get(), 5)
            if name in ("typing_stopped", "new_message"):
                assert name not in seen
                seen[name] = data
        assert seen["typing_stopped"] == {"chat_id": chat["id"], "user_id": alice.id}
        assert seen["new_message"] == sent
        # The typist's own stream carries no typing of theirs; exactly one start and one stop reached bob.
        rest_b = await quiet(b, 1.0)
        own = await quiet(a, 0.2)
        assert not [e for e in rest_b if e[1].startswith("typing")]
        assert not [e for e in own if e[1].startswith("typing")]

        # The next keystroke starts a new round at once.
        again = await client.post(f"/api/chat/{chat['id']}/typing", headers=alice.auth)
        assert again.json()["data"]["announced"] is True
        await b.next("typing_started")

    # Only members may say they type; a chat elsewhere does not exist for the caller.
    refused = await client.post(f"/api/chat/{chat['id']}/typing", headers=carol.auth)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    outsider = await signup(client)
    hidden = await client.post(f"/api/chat/{chat['id']}/typing", headers=outsider.auth)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    assert (await client.post("/api/chat/1/typing")).status_code == 401


async def test_typing_lapses_by_itself_once(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    async with stream(stack, bob) as b:
        await b.next("connected")
        started = time.monotonic()
        assert (await client.post(f"/api/chat/{chat['id']}/typing", headers=alice.auth)).status_code == 200
        await b.next("typing_started")
        _, got = await b.next("typing_stopped", timeout=10)
        lapsed = time.monotonic() - started
        assert got == {"chat_id": chat["id"], "user_id": alice.id}
        assert 5.0 <= lapsed <= 8.0, lapsed  # 6 s after the last call, claimed by a sweep every 0.5 s
        # Announced once, however many sweeps ran.
        assert not [e for e in await quiet(b, 1.5) if e[1].startswith("typing")]


async def presence_change(reader: SseReader, user_id: int) -> str:
    """The next presence change of ``user_id`` (a stream also hears its own user coming online)."""
    while True:
        event_id, got = await reader.next("user_presence")
        assert event_id is None  # ephemeral, like typing
        if got["user_id"] == user_id:
            return str(got["status"])


def presence_events(events: list[tuple[str | None, str, Any]], user_id: int) -> list[Any]:
    return [data for _, name, data in events if name == "user_presence" and data["user_id"] == user_id]


async def test_presence_follows_live_connections(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)

    async def statuses() -> dict[int, str]:
        response = await client.get("/api/presence", headers=bob.auth)
        assert response.status_code == 200
        return {p["user_id"]: p["status"] for p in response.json()["data"]}

    async with stream(stack, bob) as b:
        await b.next("connected")
        assert (await statuses())[alice.id] == "offline"
        async with stream(stack, alice) as first_tab:
            await first_tab.next("connected")
            assert await presence_change(b, alice.id) == "online"
            assert (await statuses())[alice.id] == "online"

            away = await client.post("/api/presence", headers=alice.auth, json={"status": "away"})
            assert away.status_code == 200 and away.json()["data"] == {"user_id": alice.id, "status": "away"}
            assert await presence_change(b, alice.id) == "away"
            back = await client.post("/api/presence", headers=alice.auth, json={"status": "online"})
            assert back.json()["data"]["status"] == "online"
            assert await presence_change(b, alice.id) == "online"

            async with stream(stack, alice) as second_tab:
                await second_tab.next("connected")
                # A second tab changes nothing: no transition, no event.
                assert presence_events(await quiet(b, 1.0), alice.id) == []
            # One tab closed, the other still open: still online.
            assert presence_events(await quiet(b, 1.5), alice.id) == []
            assert (await statuses())[alice.id] == "online"
        assert await presence_change(b, alice.id) == "offline"
        assert (await statuses())[alice.id] == "offline"

    # Bad bodies change nothing.
    for body in ({"status": "busy"}, {"status": 1}, {}, {"status": "away", "x": 1}):
        bad = await client.post("/api/presence", headers=alice.auth, json=body)
        assert bad.status_code == 400, (body, bad.text)
        assert bad.json()["error"]["code"] == "validation_error"
    assert (await statuses())[alice.id] == "offline"


async def test_presence_is_scoped_to_the_workspace(stack: RunningStack, client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    stranger = await signup(client)
    async with stream(stack, stranger) as s, stream(stack, bob) as b:
        await s.next("connected")
        await b.next("connected")
        async with stream(stack, alice) as a:
            await a.next("connected")
            assert await presence_change(b, alice.id) == "online"
            assert presence_events(await quiet(s, 1.0), alice.id) == []
    listed = (await client.get("/api/presence", headers=stranger.auth)).json()["data"]
    assert stranger.id in [p["user_id"] for p in listed]
    assert alice.id not in [p["user_id"] for p in listed]


async def test_online_users_lists_who_is_around_in_a_chat_or_the_workspace(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob, carol = await team(client, 3)
    stranger = await signup(client)
    chat = await create_chat(client, alice, [bob])

    async def online(user: User, **params: int) -> list[dict]:
        response = await client.get("/online-users", headers=user.auth, params=params)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    async with stream(stack, alice) as a, stream(stack, bob) as b, stream(stack, carol) as c:
        for reader in (a, b, c):
            await reader.next("connected")
        # Alice's own stream sees the others come online; by then presence is written.
        seen = set()
        while seen != {bob.id, carol.id}:
            _, data = await a.next("user_presence", timeout=10)
            if data["status"] == "online" and data["user_id"] != alice.id:
                seen.add(data["user_id"])
        away = await client.post("/api/presence", headers=carol.auth, json={"status": "away"})
        assert away.status_code == 200, away.text
        assert await presence_change(a, carol.id) == "away"

        workspace = await online(alice)
        assert {(u["user_id"], u["status"]) for u in workspace} == {(bob.id, "online"), (carol.id, "away")}
        assert {u["fullname"] for u in workspace} == {u.session["user"]["fullname"] for u in (bob, carol)}
        assert await online(alice, workspace_id=alice.workspace_id) == workspace
        # In the chat: its members only (Carol is not one), never the caller.
        assert [u["user_id"] for u in await online(alice, chat_id=chat["id"])] == [bob.id]
        assert [u["user_id"] for u in await online(bob, chat_id=chat["id"])] == [alice.id]

    # Refused: another workspace's id, a chat of which the caller is not a member or that is not in their
    # workspace, bad numbers, no token.
    cases = [
        (carol, {"chat_id": chat["id"]}, 403, "forbidden"),
        (alice, {"workspace_id": stranger.workspace_id}, 403, "forbidden"),
        (stranger, {"chat_id": chat["id"]}, 404, "not_found"),
        (alice, {"chat_id": "abc"}, 400, "validation_error"),
        (alice, {"chat_id": 0}, 400, "validation_error"),
        (alice, {"workspace_id": -1}, 400, "validation_error"),
    ]
    for user, params, status, code in cases:
        response = await client.get("/online-users", headers=user.auth, params=params)
        assert response.status_code == status, (params, response.text)
        assert response.json()["error"]["code"] == code
    assert (await client.get("/online-users")).status_code == 401
