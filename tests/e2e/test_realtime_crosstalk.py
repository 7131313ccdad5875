"""No cross-talk: over a seeded random run of joins, leaves and sends in several chats, each user's stream
carries exactly the messages of the chats they were in at the time, and nothing else."""

from __future__ import annotations

import random

import httpx

from tests.conftest import create_chat, team
from tests.realtime import quiet, stream
from tests.sse import send
from tests.stackutil import RunningStack


async def test_users_receive_exactly_the_messages_of_their_chats(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    rng = random.Random(20261123)
    users = await team(client, 5)
    owner = users[0]
    chats = [await create_chat(client, owner, [], name=f"room {i}") for i in range(3)]
    members: dict[int, set[int]] = {c["id"]: {owner.id} for c in chats}
    expected: dict[int, list[int]] = {u.id: [] for u in users}

    readers = {}
    try:
        for user in users:
            readers[user.id] = stream(stack, user)
        opened = {uid: await cm.__aenter__() for uid, cm in readers.items()}
        for reader in opened.values():
            await reader.next("connected")

        for _ in range(60):
            chat_id = rng.choice(list(members))
            user = rng.choice(users[1:])
            action = rng.random()
            if action < 0.25 and user.id not in members[chat_id]:
                response = await client.post(
                    f"/api/chat/{chat_id}/members", headers=owner.auth, json={"user_ids": [user.id]}
                )
                assert response.status_code == 200, response.text
                members[chat_id].add(user.id)
            elif action < 0.4 and user.id in members[chat_id]:
                response = await client.delete(f"/api/chat/{chat_id}/members/{user.id}", headers=user.auth)
                assert response.status_code == 200, response.text
                members[chat_id].discard(user.id)
            else:
                sender = user if user.id in members[chat_id] else owner
                sent = await send(client, sender, chat_id, f"r{rng.random()}")
                assert sent.status_code == 201, sent.text
                for member in members[chat_id]:
                    expected[member].append(sent.json()["data"]["id"])

        for user in users:
            events = await quiet(opened[user.id], 3.0 if user is users[0] else 1.0)
            got = [data["id"] for _, name, data in events if name == "new_message"]
            # The log keeps the order of each chat; across chats only the set is fixed.
            assert sorted(got) == sorted(expected[user.id]), user.id
            assert len(got) == len(set(got))
    finally:
        for cm in readers.values():
            await cm.__aexit__(None, None, None)
