"""Resume across a `kill -9` of notify_server, of the chat API and of nats-server, each restarted by the
supervisor: the client gets exactly the 50 messages it missed, in order, then live ones.

These tests kill processes, so they run on a stack of their own rather than the shared session stack."""

from __future__ import annotations

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
    running = make_stack(tmp_path_factory.mktemp("kill-stack") / "data")
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
