"""Parts of the stack failing. Resume across a `kill -9` of notify_server, of the chat API and of
nats-server, each restarted by the supervisor: the client gets exactly the 50 messages it missed, in
order, then live ones. A database that stops answering: requests get 503 in the envelope once the
database's time limit passes (not the gateway's 504 after 30 s), and a send retried with its
Idempotency-Key afterwards is stored once.

These tests kill and stop processes, so they run on a stack of their own rather than the shared session
stack."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.conftest import create_chat, team
from tests.e2e.test_realtime_resume import assert_resumes_with_exactly, last_id_after_one_message
from tests.realtime import descendants, kill9, wait_restarted
from tests.sse import send
from tests.stackutil import RunningStack, make_stack


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # A statement, connection or pool wait of two seconds at most (ten by default), for the outage test.
    running = make_stack(tmp_path_factory.mktemp("kill-stack") / "data", DATABASE_TIMEOUT="2")
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("victim", ["notify_server", "fechatter_server", "nats"])
async def test_resume_after_kill_9(own_stack: RunningStack, victim: str) -> None:
    stack = own_stack
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        alice, bob = await team(client)
        chat = await create_chat(client, alice, [bob])
        last_id = await last_id_after_one_message(stack, client, alice, bob, chat["id"])

        workers = descendants(stack.state()["children"][victim]["pid"])
        old_pid = kill9(stack, victim)
        if victim == "fechatter_server":
            # Sends need the chat API: they happen once it is back.
            await wait_restarted(stack, victim, old_pid)
        missed = []
        for i in range(50):
            response = await send(client, alice, chat["id"], f"missed {i}")
            assert response.status_code == 201, response.text
            missed.append(response.json()["data"])
        await wait_restarted(stack, victim, old_pid)
        await assert_resumes_with_exactly(stack, client, bob, last_id, missed, alice, chat["id"])
    assert stack.state()["children"][victim]["restarts"] >= 1
    # The killed process's workers do not live on as orphans next to the new instance.
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, f"workers of the killed {victim} still running: {[p.pid for p in alive]}"


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["success"] is False
    assert response.json()["error"]["code"] == "unavailable"


async def test_a_database_that_stops_answering_gets_503_and_no_send_is_lost_or_doubled(
    own_stack: RunningStack,
) -> None:
    stack = own_stack
    # Well under the gateway's 30 s upstream limit: a 504 from it would time out here instead.
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as client:
        alice, bob = await team(client)
        chat = await create_chat(client, alice, [bob])
        key = {"Idempotency-Key": f"outage-{uuid.uuid4()}"}
        postmaster = stack.state()["children"]["postgres"]["pid"]
        stopped = [postmaster, *(p.pid for p in descendants(postmaster))]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            assert_unavailable(await client.get("/api/users/me", headers=alice.auth))
            refused = await client.post(
                f"/api/chat/{chat['id']}/messages",
                headers={**alice.auth, **key},
                json={"content": "sent while the database hung"},
            )
            assert_unavailable(refused)
            assert refused.headers["retry-after"] == "5"
            assert_unavailable(await client.get(f"/api/chat/{chat['id']}/messages", headers=bob.auth))
            sse = await client.get("/sse", params={"access_token": bob.token})
            assert_unavailable(sse)
            health = (await client.get("/api/health/all")).json()
            assert health["services"]["fechatter_server"]["checks"]["postgres"]["status"] == "down"
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        for _ in range(50):
            back = await client.get("/api/users/me", headers=alice.auth)
            if back.status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert back.status_code == 200, back.text
        # The client retries the refused send with its key: whether or not the database ran the first
        # attempt once it woke, the message is there exactly once.
        retried = await client.post(
            f"/api/chat/{chat['id']}/messages",
            headers={**alice.auth, **key},
            json={"content": "sent while the database hung"},
        )
        assert retried.status_code in (200, 201), retried.text
        page = await client.get(f"/api/chat/{chat['id']}/messages", headers=bob.auth)
        stored = [m for m in page.json()["data"] if m["content"] == "sent while the database hung"]
        assert len(stored) == 1
        assert stored[0]["idempotency_key"] == key["Idempotency-Key"]
        assert stored[0]["id"] == retried.json()["data"]["id"]
