"""Read positions and unread counts, through the gateway against the real stack."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from tests.conftest import User, create_chat, signup, team, unique_email
from tests.sse import SseReader, open_sse, send
from tests.stackutil import RunningStack

pytestmark = pytest.mark.e2e


async def mark_read(client: httpx.AsyncClient, user: User, chat_id: int, seq: Any) -> httpx.Response:
    return await client.post(f"/api/chat/{chat_id}/read", headers=user.auth, json={"seq": seq})


async def read_state(client: httpx.AsyncClient, user: User, chat_id: int, seq: Any) -> dict[str, Any]:
    response = await mark_read(client, user, chat_id, seq)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


async def unread_counts(client: httpx.AsyncClient, user: User) -> dict[int, int]:
    response = await client.get("/api/unread-counts", headers=user.auth)
    assert response.status_code == 200, response.text
    items = response.json()["data"]
    assert [item["chat_id"] for item in items] == sorted(item["chat_id"] for item in items)
    return {item["chat_id"]: item["unread_count"] for item in items}


async def listed_unread(client: httpx.AsyncClient, user: User) -> dict[int, int]:
    response = await client.get("/api/workspace/chats", headers=user.auth)
    assert response.status_code == 200, response.text
    return {chat["id"]: chat["unread_count"] for chat in response.json()["data"]}


async def assert_unread_everywhere(
    client: httpx.AsyncClient, user: User, chat_id: int, expected: int
) -> None:
    """The chat list and the unread-counts route give the same number."""
    assert (await unread_counts(client, user))[chat_id] == expected
    assert (await listed_unread(client, user))[chat_id] == expected


async def test_read_position_moves_forward_only_and_clamps(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    chat_id = chat["id"]
    for i in range(5):
        assert (await send(client, bob, chat_id, f"b{i}")).status_code == 201
    await assert_unread_everywhere(client, alice, chat_id, 5)

    assert await read_state(client, alice, chat_id, 3) == {
        "chat_id": chat_id,
        "last_read_seq": 3,
        "unread_count": 2,
    }
    await assert_unread_everywhere(client, alice, chat_id, 2)

    # A lower or equal seq changes nothing and answers the stored position.
    for seq in (1, 0, 3):
        assert await read_state(client, alice, chat_id, seq) == {
            "chat_id": chat_id,
            "last_read_seq": 3,
            "unread_count": 2,
        }
    # Beyond the last message: clamped to last_seq, so what is sent later is still unread.
    assert (await read_state(client, alice, chat_id, 1_000_000))["last_read_seq"] == 5
    await assert_unread_everywhere(client, alice, chat_id, 0)
    for i in range(2):
        await send(client, bob, chat_id, f"later {i}")
    await assert_unread_everywhere(client, alice, chat_id, 2)
    assert await read_state(client, alice, chat_id, 2**62) == {
        "chat_id": chat_id,
        "last_read_seq": 7,
        "unread_count": 0,
    }


async def test_own_messages_never_count_and_sending_marks_read(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    chat_id = (await create_chat(client, alice, [bob]))["id"]
    # seq 1 alice, 2 bob, 3 alice, 4 alice
    for user in (alice, bob, alice, alice):
        await send(client, user, chat_id, "hello")
    await assert_unread_everywhere(client, alice, chat_id, 0)
    await assert_unread_everywhere(client, bob, chat_id, 2)
    # Each send moved the sender's own position to the message.
    assert (await read_state(client, alice, chat_id, 0))["last_read_seq"] == 4
    assert await read_state(client, bob, chat_id, 0) == {
        "chat_id": chat_id,
        "last_read_seq": 2,
        "unread_count": 2,
    }
    # Bob replies: his position jumps over alice's messages too, so nothing is unread for him.
    await send(client, bob, chat_id, "caught up")
    await assert_unread_everywhere(client, bob, chat_id, 0)
    await assert_unread_everywhere(client, alice, chat_id, 1)


async def test_deleted_messages_do_not_count(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    chat_id = (await create_chat(client, alice, [bob]))["id"]
    sent = [(await send(client, bob, chat_id, f"b{i}")).json()["data"] for i in range(3)]
    await assert_unread_everywhere(client, alice, chat_id, 3)
    deleted = await client.delete(f"/api/chat/{chat_id}/messages/{sent[1]['id']}", headers=bob.auth)
    assert deleted.status_code == 200, deleted.text
    await assert_unread_everywhere(client, alice, chat_id, 2)
    # The deleted message keeps its seq, so reading up to it still counts by seq.
    assert await read_state(client, alice, chat_id, 2) == {
        "chat_id": chat_id,
        "last_read_seq": 2,
        "unread_count": 1,
    }


async def test_unread_counts_cover_every_chat_of_the_caller(client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    first = (await create_chat(client, alice, [bob]))["id"]
    second = (await create_chat(client, bob, [carol, alice], name="second"))["id"]
    only_bob_carol = (await create_chat(client, carol, [bob], name="third"))["id"]
    await send(client, bob, first, "1")
    await send(client, carol, second, "2")
    await send(client, carol, second, "3")
    await send(client, carol, only_bob_carol, "4")

    assert await unread_counts(client, alice) == {first: 1, second: 2}
    assert await unread_counts(client, bob) == {first: 0, second: 2, only_bob_carol: 1}
    assert await unread_counts(client, carol) == {second: 0, only_bob_carol: 0}
    assert await listed_unread(client, bob) == await unread_counts(client, bob)
    assert (await unread_counts(client, await signup(client))) == {}


async def test_read_is_for_members_of_the_callers_workspace(client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    chat_id = (await create_chat(client, alice, [bob]))["id"]
    await send(client, alice, chat_id, "hi")

    not_member = await mark_read(client, carol, chat_id, 1)
    assert not_member.status_code == 403
    assert not_member.json()["success"] is False
    assert not_member.json()["error"]["code"] == "forbidden"
    missing = await mark_read(client, carol, 999_999_999, 1)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    outsider = await signup(client)
    elsewhere = await mark_read(client, outsider, chat_id, 1)
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "not_found"
    anonymous = await client.post(f"/api/chat/{chat_id}/read", json={"seq": 1})
    assert anonymous.status_code == 401
    # A bad token is refused before the body is looked at.
    assert (await client.post(f"/api/chat/{chat_id}/read", json={"seq": "x"})).status_code == 401
    assert (await client.get("/api/unread-counts")).status_code == 401
    # Nobody's refused call moved bob's position.
    assert (await read_state(client, bob, chat_id, 0))["last_read_seq"] == 0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def read_room(stack: RunningStack) -> tuple[User, int]:
    """A reader whose stored position is 2 of 3 in a chat; the bad-body cases must leave it there."""
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as http:
        alice, bob = await team(http)
        chat_id = (await create_chat(http, alice, [bob]))["id"]
        for i in range(3):
            await send(http, bob, chat_id, f"m{i}")
        assert (await read_state(http, alice, chat_id, 2))["last_read_seq"] == 2
    return alice, chat_id


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "validation_error", "seq"),
        ({"seq": "1"}, "validation_error", "seq"),
        ({"seq": 3.0}, "validation_error", "seq"),
        ({"seq": True}, "validation_error", "seq"),
        ({"seq": -1}, "validation_error", "seq"),
        ({"seq": 2**62 + 1}, "validation_error", "seq"),
        ({"seq": 2**63}, "validation_error", "seq"),
        ({"seq": None}, "validation_error", "seq"),
        ({"seq": 3, "chat_id": 1}, "validation_error", "chat_id"),
        ([3], "validation_error", None),
        (b'{"seq": ', "bad_request", None),
        (b"", "bad_request", None),
    ],
)
async def test_bad_read_bodies_are_refused_and_change_nothing(
    client: httpx.AsyncClient, read_room: tuple[User, int], body: Any, code: str, field: str | None
) -> None:
    alice, chat_id = read_room
    if isinstance(body, bytes):
        response = await client.post(
            f"/api/chat/{chat_id}/read",
            headers={**alice.auth, "content-type": "application/json"},
            content=body,
        )
    else:
        response = await client.post(f"/api/chat/{chat_id}/read", headers=alice.auth, json=body)
    assert response.status_code == 400, response.text
    envelope = response.json()
    assert envelope["success"] is False
    assert envelope["error"]["code"] == code
    assert envelope["error"]["message"]
    assert envelope["error"].get("field") == field
    assert await read_state(client, alice, chat_id, 0) == {
        "chat_id": chat_id,
        "last_read_seq": 2,
        "unread_count": 1,
    }


async def test_read_route_is_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/openapi.json")).json()
    operation = spec["paths"]["/api/chat/{chat_id}/read"]["post"]
    assert "clamped" in operation["description"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert schema["required"] == ["seq"] and schema["additionalProperties"] is False
    assert spec["paths"]["/api/unread-counts"]["get"]["summary"]


async def events_until(
    stream: SseReader, done: Callable[[str, Any], bool], timeout: float = 5.0
) -> list[tuple[str, Any]]:
    """Every event the stream delivers up to and including the first one ``done`` accepts."""
    seen: list[tuple[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        _, name, data = await asyncio.wait_for(stream.events.get(), max(deadline - time.monotonic(), 0.01))
        seen.append((name, data))
        if done(name, data):
            return seen


async def test_read_reaches_the_readers_other_connections_only(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    alice, bob = await team(client)
    chat_id = (await create_chat(client, alice, [bob]))["id"]
    http_a, other_device = await open_sse(stack, alice)
    http_b, member = await open_sse(stack, bob)
    try:
        await other_device.next("connected")
        await member.next("connected")
        for i in range(2):
            await send(client, bob, chat_id, f"b{i}")
        await read_state(client, alice, chat_id, 2)
        _, data = await other_device.next("message_read")
        assert data == {"chat_id": chat_id, "user_id": alice.id, "last_read_seq": 2}

        # A read that moves nothing announces nothing. Events reach a user's log in commit order, so
        # anything the no-op read (or the read above, for bob) produced would arrive before this marker.
        assert (await read_state(client, alice, chat_id, 1))["last_read_seq"] == 2
        marker = (await send(client, alice, chat_id, "marker")).json()["data"]

        def is_marker(name: str, data: Any) -> bool:
            return name == "new_message" and data["id"] == marker["id"]

        assert [name for name, _ in await events_until(other_device, is_marker)] == ["new_message"]
        assert "message_read" not in [name for name, _ in await events_until(member, is_marker)]
    finally:
        await other_device.close()
        await member.close()
        await http_a.aclose()
        await http_b.aclose()


# --- A model of the unread rule, checked against the server after every step ---------------------------

USERS = st.integers(min_value=0, max_value=2)
CHATS = st.integers(min_value=0, max_value=1)
# Below, at and beyond the chats' last seq (a run sends at most a couple of dozen messages), and the top.
SEQS = st.one_of(st.integers(min_value=0, max_value=14), st.just(2**62))


class ReadsModel(RuleBasedStateMachine):
    """Three users of one workspace; user 0 owns both chats; chat 0 starts with all three, chat 1 with users
    0 and 1. Users 1 and 2 leave and are added back.

    The model keeps each chat's senders in seq order, the deleted seqs and each member's read position,
    applying the rules of API.md: reads move forward only and are clamped to the last seq, a send moves the
    sender's own position to their message, someone added starts with the history read, and unread = later
    messages sent by others that are not deleted."""

    base_url: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.http = httpx.Client(base_url=self.base_url, timeout=15)
        self.auth: list[dict[str, str]] = []
        self.chat_ids: list[int] = []
        self.members: list[set[int]] = [{0, 1, 2}, {0, 1}]
        self.senders: list[list[int]] = [[], []]
        self.position: list[list[int]] = [[0, 0] for _ in range(3)]
        self.message_ids: list[list[int]] = [[], []]
        self.deleted: list[set[int]] = [set(), set()]
        self.user_ids: list[int] = []

    def teardown(self) -> None:
        self.http.close()

    def _signup(self, **fields: Any) -> dict[str, Any]:
        body = {"email": unique_email("model"), "password": "correct horse 1", "fullname": "Model", **fields}
        response = self.http.post("/api/signup", json=body)
        assert response.status_code == 201, response.text
        return response.json()["data"]

    def _create_chat(self, owner: int, others: list[int], user_ids: list[int]) -> int:
        body = {"name": "model", "chat_type": "PrivateChannel", "members": [user_ids[o] for o in others]}
        response = self.http.post("/api/workspace/chats", headers=self.auth[owner], json=body)
        assert response.status_code == 201, response.text
        return response.json()["data"]["id"]

    @initialize()
    def create_workspace(self) -> None:
        owner = self._signup(workspace_name="Model")
        sessions = [owner]
        for _ in range(2):
            headers = {"Authorization": f"Bearer {owner['access_token']}"}
            invite = self.http.post("/api/workspace/invites", headers=headers, json={})
            assert invite.status_code == 201, invite.text
            sessions.append(self._signup(invite_code=invite.json()["data"]["code"]))
        self.auth = [{"Authorization": f"Bearer {s['access_token']}"} for s in sessions]
        user_ids = [s["user"]["id"] for s in sessions]
        self.user_ids = user_ids
        self.chat_ids = [self._create_chat(0, [1, 2], user_ids), self._create_chat(0, [1], user_ids)]

    def unread(self, user: int, chat: int) -> int:
        after = self.position[user][chat]
        return sum(
            1
            for seq, sender in enumerate(self.senders[chat], 1)
            if seq > after and sender != user and seq not in self.deleted[chat]
        )

    @rule(user=USERS, chat=CHATS)
    def send(self, user: int, chat: int) -> None:
        response = self.http.post(
            f"/api/chat/{self.chat_ids[chat]}/messages", headers=self.auth[user], json={"content": "m"}
        )
        if user not in self.members[chat]:
            assert response.status_code == 403, response.text
            return
        assert response.status_code == 201, response.text
        self.senders[chat].append(user)
        assert response.json()["data"]["seq"] == len(self.senders[chat])
        self.message_ids[chat].append(response.json()["data"]["id"])
        self.position[user][chat] = len(self.senders[chat])

    @rule(user=USERS, chat=CHATS, pick=st.integers(min_value=0, max_value=30))
    def delete(self, user: int, chat: int, pick: int) -> None:
        if not self.message_ids[chat]:
            return
        index = pick % len(self.message_ids[chat])
        url = f"/api/chat/{self.chat_ids[chat]}/messages/{self.message_ids[chat][index]}"
        response = self.http.delete(url, headers=self.auth[user])
        if user not in self.members[chat]:
            assert response.status_code == 403, response.text
            return
        # The sender, or the chat's owner (user 0), may delete; deleting again changes nothing.
        if user != self.senders[chat][index] and user != 0:
            assert response.status_code == 403, response.text
            return
        assert response.status_code == 200, response.text
        self.deleted[chat].add(index + 1)

    @rule(user=st.integers(min_value=1, max_value=2), chat=CHATS)
    def leave(self, user: int, chat: int) -> None:
        url = f"/api/chat/{self.chat_ids[chat]}/members/{self.user_ids[user]}"
        response = self.http.delete(url, headers=self.auth[user])
        if user not in self.members[chat]:
            assert response.status_code in (403, 404), response.text
            return
        assert response.status_code == 200, response.text
        self.members[chat].discard(user)

    @rule(user=st.integers(min_value=1, max_value=2), chat=CHATS)
    def join(self, user: int, chat: int) -> None:
        if user in self.members[chat]:
            return
        response = self.http.post(
            f"/api/chat/{self.chat_ids[chat]}/members",
            headers=self.auth[0],
            json={"user_ids": [self.user_ids[user]]},
        )
        assert response.status_code == 200, response.text
        self.members[chat].add(user)
        self.position[user][chat] = len(self.senders[chat])  # a newcomer starts with the history read

    @rule(user=USERS, chat=CHATS, seq=SEQS)
    def read(self, user: int, chat: int, seq: int) -> None:
        chat_id = self.chat_ids[chat]
        response = self.http.post(f"/api/chat/{chat_id}/read", headers=self.auth[user], json={"seq": seq})
        if user not in self.members[chat]:
            assert response.status_code == 403, response.text
            return
        assert response.status_code == 200, response.text
        target = min(seq, len(self.senders[chat]))
        self.position[user][chat] = max(self.position[user][chat], target)
        assert response.json()["data"] == {
            "chat_id": chat_id,
            "last_read_seq": self.position[user][chat],
            "unread_count": self.unread(user, chat),
        }

    @rule(user=USERS)
    def chat_list_agrees(self, user: int) -> None:
        response = self.http.get("/api/workspace/chats", headers=self.auth[user])
        assert response.status_code == 200, response.text
        listed = {chat["id"]: chat["unread_count"] for chat in response.json()["data"]}
        assert listed == self.expected_counts(user)

    def expected_counts(self, user: int) -> dict[int, int]:
        return {
            self.chat_ids[chat]: self.unread(user, chat) for chat in range(2) if user in self.members[chat]
        }

    @invariant()
    def unread_counts_match_the_model(self) -> None:
        for user in range(3):
            response = self.http.get("/api/unread-counts", headers=self.auth[user])
            assert response.status_code == 200, response.text
            got = [(item["chat_id"], item["unread_count"]) for item in response.json()["data"]]
            assert got == sorted(self.expected_counts(user).items()), f"user {user}"


def test_unread_counts_follow_the_model(stack: RunningStack) -> None:
    machine = type("ReadsModelOnStack", (ReadsModel,), {"base_url": stack.url})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=15,
            stateful_step_count=25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
