"""Races a client can start: one idempotency key sent 50 times at once, many senders in one chat, one refresh
token presented several times at once. Checked through the API and against the database itself."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import httpx
import pytest

from tests.conftest import create_chat, signup, team
from tests.sse import send
from tests.stackutil import RunningStack

pytestmark = pytest.mark.e2e


async def stored_messages(stack: RunningStack, chat_id: int) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(stack.database_url())
    try:
        return await conn.fetch(
            "SELECT id, seq, sender_id, content, idempotency_key FROM messages"
            " WHERE chat_id = $1 ORDER BY seq",
            chat_id,
        )
    finally:
        await conn.close()


async def test_fifty_sends_with_one_key_make_one_message(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob = await team(client)
    chat_id = (await create_chat(client, alice, [bob]))["id"]

    async def attempt(i: int) -> httpx.Response:
        # Half carry the key in the body, half in the Idempotency-Key header: the same key either way.
        if i % 2:
            return await send(client, alice, chat_id, "exactly once", idempotency_key="fifty")
        return await client.post(
            f"/api/chat/{chat_id}/messages",
            headers={**alice.auth, "Idempotency-Key": "fifty"},
            json={"content": "exactly once"},
        )

    results = await asyncio.gather(*(attempt(i) for i in range(50)))
    assert Counter(r.status_code for r in results) == {201: 1, 200: 49}, [r.text for r in results[:3]]
    assert len({(r.json()["data"]["id"], r.json()["data"]["seq"]) for r in results}) == 1
    rows = await stored_messages(stack, chat_id)
    assert [(r["seq"], r["content"], r["idempotency_key"]) for r in rows] == [(1, "exactly once", "fifty")]
    chat = (await client.get(f"/api/chat/{chat_id}", headers=bob.auth)).json()["data"]
    assert chat["last_seq"] == 1


async def test_one_key_with_two_contents_has_one_winner_and_conflicts(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob = await team(client)
    chat_id = (await create_chat(client, alice, [bob]))["id"]
    contents = ["first text" if i % 5 else "other text" for i in range(50)]
    results = await asyncio.gather(*(send(client, alice, chat_id, c, idempotency_key="k") for c in contents))
    created = [r for r in results if r.status_code == 201]
    assert len(created) == 1
    winner = created[0].json()["data"]
    for content, response in zip(contents, results, strict=True):
        if response.status_code == 201:
            continue
        if content == winner["content"]:
            assert response.status_code == 200, response.text
            assert response.json()["data"]["id"] == winner["id"]
        else:
            assert response.status_code == 409, response.text
            assert response.json()["error"]["code"] == "idempotency_conflict"
    assert len(await stored_messages(stack, chat_id)) == 1


async def test_twenty_senders_get_seq_one_to_n_without_a_gap(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    people = await team(client, 20)
    owner = people[0]
    chat_id = (await create_chat(client, owner, people[1:], chat_type="Group", name="crowd"))["id"]
    per_sender = 3

    async def sender(index: int) -> list[int]:
        seqs = []
        for n in range(per_sender):
            response = await send(client, people[index], chat_id, f"{index}-{n}")
            assert response.status_code == 201, response.text
            seqs.append(response.json()["data"]["seq"])
        return seqs

    answered = await asyncio.gather(*(sender(i) for i in range(len(people))))
    total = per_sender * len(people)
    assert sorted(seq for seqs in answered for seq in seqs) == list(range(1, total + 1))
    # Each sender's own messages were numbered in the order that sender sent them.
    assert all(seqs == sorted(seqs) for seqs in answered)
    rows = await stored_messages(stack, chat_id)
    assert [r["seq"] for r in rows] == list(range(1, total + 1))
    for row in rows:
        index, _ = row["content"].split("-")
        assert row["sender_id"] == people[int(index)].id
    listed = (await client.get(f"/api/chat/{chat_id}/messages?limit=200", headers=owner.auth)).json()["data"]
    assert [m["seq"] for m in listed] == list(range(1, total + 1))
    assert (await client.get(f"/api/chat/{chat_id}", headers=owner.auth)).json()["data"]["last_seq"] == total


async def test_one_refresh_token_raced_ten_times_has_one_winner(client: httpx.AsyncClient) -> None:
    """Ten tabs refreshing with the same token at once: one gets the new pair, the others 401. They race
    within the reuse grace window, so (README: "refused" within the window) the winner's session lives on;
    the same token presented after the window ends the whole family."""
    user = await signup(client)
    results = await asyncio.gather(
        *(client.post("/api/refresh", json={"refresh_token": user.refresh_token}) for _ in range(10))
    )
    assert sorted(r.status_code for r in results) == [200] + [401] * 9, [r.text for r in results]
    for loser in (r for r in results if r.status_code == 401):
        assert loser.json()["error"]["code"] == "unauthorized"
    winner = next(r for r in results if r.status_code == 200).json()["data"]
    assert winner["refresh_token"] != user.refresh_token

    # The family is not revoked by the race: the winner refreshes again and the new access token works.
    again = await client.post("/api/refresh", json={"refresh_token": winner["refresh_token"]})
    assert again.status_code == 200, again.text
    newest = again.json()["data"]
    me = await client.get("/api/users/me", headers={"Authorization": f"Bearer {newest['access_token']}"})
    assert me.status_code == 200 and me.json()["data"]["id"] == user.id

    # After the grace window (1 s on the test stack) the first token is a stolen copy: the family ends.
    await asyncio.sleep(1.3)
    replay = await client.post("/api/refresh", json={"refresh_token": user.refresh_token})
    assert replay.status_code == 401
    ended = await client.post("/api/refresh", json={"refresh_token": newest["refresh_token"]})
    assert ended.status_code == 401 and ended.json()["error"]["code"] == "unauthorized"
