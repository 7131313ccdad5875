"""Two instances of the chat API and two of notify behind one gateway (`FECHATTER_REPLICAS=chat=2,notify=2`):
sends spread over both chat instances stay gap-free and idempotent, SSE clients on different notify
instances see the same events, a stream resumes on the other instance, and killing one chat instance
keeps reads working while the supervisor restarts it; presence held on two notify instances survives the
kill of one and lapses when its only instance is killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.conftest import User, create_chat, team
from tests.realtime import metric
from tests.sse import SseReader
from tests.stackutil import REPO_ROOT, RunningStack, make_stack

pytestmark = pytest.mark.e2e


PRESENCE_TTL = 4


def _pair_of_free_ports(taken: set[int]) -> int:
    """A port p with p and p + 1 both free (the replicas take consecutive ports)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port in taken or port + 1 in taken or port + 1 > 65535:
            continue
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    base = tmp_path_factory.mktemp("replicas")
    running = make_stack(base / "data")
    taken = {
        int(running.env[v]) for v in ("GATEWAY_PORT", "BOT_PORT", "ANALYTICS_PORT", "PG_PORT", "NATS_PORT")
    }
    taken.add(int(running.env["REDIS_PORT"]))
    chat = _pair_of_free_ports(taken)
    notify = _pair_of_free_ports(taken | {chat, chat + 1})
    running.env.update(
        {
            "FECHATTER_PORT": str(chat),
            "NOTIFY_PORT": str(notify),
            "FECHATTER_REPLICAS": "chat=2,notify=2",
            # Presence of a killed instance's streams lapses within seconds rather than half a minute.
            "PRESENCE_TTL_SECONDS": str(PRESENCE_TTL),
            "PRESENCE_HEARTBEAT_SECONDS": "1",
        }
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


def instance_url(stack: RunningStack, name: str) -> str:
    return f"http://127.0.0.1:{stack.state()['children'][name]['port']}"


async def sends_counted(stack: RunningStack, name: str) -> int:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(instance_url(stack, name) + "/metrics")).text
    total = 0
    for line in text.splitlines():
        if line.startswith("http_requests_total{") and 'method="POST"' in line and "/messages" in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


@contextlib.asynccontextmanager
async def sse_at(base_url: str, user: User, last_event_id: str | None = None) -> AsyncIterator[SseReader]:
    http = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(10, read=30))
    headers = dict(user.auth)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    response = await http.send(http.build_request("GET", "/sse", headers=headers), stream=True)
    assert response.status_code == 200, await response.aread()
    reader = SseReader(response)
    try:
        yield reader
    finally:
        await reader.close()
        await http.aclose()


async def test_the_supervisor_runs_two_of_each_on_consecutive_ports(replicas: RunningStack) -> None:
    children = replicas.state()["children"]
    for name, var in (("fechatter_server", "FECHATTER_PORT"), ("notify_server", "NOTIFY_PORT")):
        assert children[name]["port"] == replicas.port(var)
        assert children[f"{name}-2"]["port"] == replicas.port(var) + 1
        async with httpx.AsyncClient(timeout=10) as http:
            for instance in (name, f"{name}-2"):
                health = await http.get(instance_url(replicas, instance) + "/health")
                assert health.status_code == 200
                assert health.json()["service"] == name
    status = subprocess.run(
        [sys.executable, "-m", "fechatter_stack", "status"],
        cwd=REPO_ROOT,
        env=replicas.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    for instance in ("fechatter_server", "fechatter_server-2", "notify_server", "notify_server-2"):
        line = next(line for line in status.stdout.splitlines() if line.split()[0] == instance)
        assert line.endswith("running"), line
    async with httpx.AsyncClient(base_url=replicas.url, timeout=10) as http:
        health = (await http.get("/api/health/all")).json()
    assert health["status"] in ("ok", "degraded")
    assert len(health["services"]["fechatter_server"]["replicas"]) == 2
    assert len(health["services"]["notify_server"]["replicas"]) == 2


async def test_sends_sse_and_resume_across_instances(replicas: RunningStack) -> None:
    async with httpx.AsyncClient(base_url=replicas.url, timeout=15) as http:
        owner, member = await team(http, 2)
        chat = await create_chat(http, owner, [member])
        url = f"/api/chat/{chat['id']}/messages"
        before = [await sends_counted(replicas, n) for n in ("fechatter_server", "fechatter_server-2")]

        notify_a = instance_url(replicas, "notify_server")
        notify_b = instance_url(replicas, "notify_server-2")
        async with sse_at(notify_a, owner) as on_a, sse_at(notify_b, member) as on_b:
            await asyncio.sleep(0.3)
            sent = []
            for n in range(6):
                response = await http.post(url, headers=owner.auth, json={"content": f"hello {n}"})
                assert response.status_code == 201, response.text
                sent.append(response.json()["data"])
            # Concurrent sends through both instances keep seq gap-free.
            burst = await asyncio.gather(
                *(http.post(url, headers=member.auth, json={"content": f"burst {n}"}) for n in range(10))
            )
            assert all(r.status_code == 201 for r in burst), [r.text for r in burst]
            sent += [r.json()["data"] for r in burst]
            assert sorted(m["seq"] for m in sent) == list(range(1, 17))

            orders = []
            for reader in (on_a, on_b):
                got = []
                while len(got) < 16:
                    _, data = await reader.next("new_message", timeout=10)
                    got.append(data["seq"])
                # Every message exactly once. Not necessarily in seq order: each instance publishes
                # its events right after commit, so two instances' events can pass each other even
                # for sends made one after another; clients order by seq.
                assert sorted(got) == list(range(1, 17))
                orders.append(got)
            # But in one order for everyone: each user's log follows the domain stream, whichever notify
            # instance fanned an event out.
            assert orders[0] == orders[1]

        after = [await sends_counted(replicas, n) for n in ("fechatter_server", "fechatter_server-2")]
        # Round-robin: each chat instance took a share of the sends.
        assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)

        # An idempotent retry answered by whichever instance gets it returns the original message.
        first = await http.post(
            url, headers={**owner.auth, "Idempotency-Key": "k-1"}, json={"content": "once"}
        )
        again = [
            await http.post(url, headers={**owner.auth, "Idempotency-Key": "k-1"}, json={"content": "once"})
            for _ in range(3)
        ]
        assert first.status_code == 201
        assert {r.json()["data"]["id"] for r in again} == {first.json()["data"]["id"]}

        # Resume on the other instance: what member missed while away arrives, in order, from notify B.
        # (Read until both messages have arrived: an earlier send's event, published late by the other chat
        # instance, may come first; the resume point is the last event this stream saw.)
        async with sse_at(notify_a, member) as first_stream:
            wanted = set()
            for n in range(2):
                response = await http.post(url, headers=owner.auth, json={"content": f"seen {n}"})
                wanted.add(response.json()["data"]["seq"])
            seen_id, seen = None, set()
            while not wanted <= seen:
                seen_id, data = await first_stream.next("new_message", timeout=10)
                seen.add(data["seq"])
        missed = []
        for n in range(3):
            response = await http.post(url, headers=owner.auth, json={"content": f"missed {n}"})
            missed.append(response.json()["data"]["seq"])
        async with sse_at(notify_b, member, last_event_id=seen_id) as resumed:
            got = []
            while not set(missed) <= set(got):
                got.append((await resumed.next("new_message", timeout=10))[1]["seq"])
        # Every missed message once, and nothing the first stream had already delivered.
        assert len(got) == len(set(got)) and not set(got) & seen, (got, missed, sorted(seen))
        assert sorted(seq for seq in got if seq in missed) == sorted(missed)


async def test_killing_one_chat_instance_keeps_reads_working(replicas: RunningStack) -> None:
    async with httpx.AsyncClient(base_url=replicas.url, timeout=15) as http:
        owner, member = await team(http, 2)
        chat = await create_chat(http, owner, [member])
        await http.post(f"/api/chat/{chat['id']}/messages", headers=owner.auth, json={"content": "hi"})
        victim = replicas.state()["children"]["fechatter_server-2"]
        os.killpg(victim["pid"], signal.SIGKILL)
        statuses = []
        for _ in range(20):
            response = await http.get(f"/api/chat/{chat['id']}/messages", headers=member.auth)
            statuses.append(response.status_code)
            assert response.status_code != 200 or response.json()["data"][0]["content"] == "hi"
        assert statuses == [200] * 20

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = replicas.state()["children"]["fechatter_server-2"]
            if now["pid"] != victim["pid"] and now["restarts"] == victim["restarts"] + 1:
                with contextlib.suppress(httpx.HTTPError):
                    async with httpx.AsyncClient(timeout=5) as direct:
                        if (
                            await direct.get(instance_url(replicas, "fechatter_server-2") + "/health")
                        ).status_code == 200:
                            break
            await asyncio.sleep(0.5)
        else:
            pytest.fail("the killed chat instance was not restarted")
        log = (replicas.data_dir.parent / f"{replicas.data_dir.name}-supervisor.log").read_text()
        assert re.search(r"fechatter_server-2 exited with code -?\d+; restarting", log), log[-2000:]


async def presence_of(http: httpx.AsyncClient, viewer: User, user_id: int) -> str:
    response = await http.get("/api/presence", headers=viewer.auth)
    assert response.status_code == 200, response.text
    return next((p["status"] for p in response.json()["data"] if p["user_id"] == user_id), "offline")


async def next_presence(reader: SseReader, user_id: int, timeout: float) -> str:
    while True:
        _, data = await reader.next("user_presence", timeout=timeout)
        if data["user_id"] == user_id:
            return data["status"]


async def wait_for_restart(stack: RunningStack, name: str, victim: dict) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = stack.state()["children"][name]
        if now["pid"] != victim["pid"]:
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(timeout=5) as direct:
                    if (await direct.get(instance_url(stack, name) + "/health")).status_code == 200:
                        return
        await asyncio.sleep(0.5)
    pytest.fail(f"{name} was not restarted")


async def test_presence_survives_the_kill_of_one_notify_instance(replicas: RunningStack) -> None:
    """Presence is the union of a user's live streams on every notify process: a `kill -9` of one process
    (no shutdown code runs) keeps a user online while another holds a stream of theirs, and takes a user
    whose only stream it held offline once the presence ttl lapses, announced once to the others."""
    async with httpx.AsyncClient(base_url=replicas.url, timeout=15) as http:
        watcher, both, only_a = await team(http, 3)
        await create_chat(http, watcher, [both, only_a])
        notify_a = instance_url(replicas, "notify_server")
        notify_b = instance_url(replicas, "notify_server-2")
        async with (
            sse_at(notify_b, watcher) as watching,
            sse_at(notify_a, both),
            sse_at(notify_b, both),
            sse_at(notify_a, only_a),
        ):
            for user in (both, only_a):
                deadline = time.monotonic() + 10
                while await presence_of(http, watcher, user.id) != "online":
                    assert time.monotonic() < deadline, f"user {user.id} never showed online"
                    await asyncio.sleep(0.2)
            # Forget the announcements of them coming online: from here on only changes count.
            await asyncio.sleep(0.5)
            while not watching.events.empty():
                watching.events.get_nowait()
            victim = replicas.state()["children"]["notify_server"]
            os.killpg(victim["pid"], signal.SIGKILL)
            killed_at = time.monotonic()
            # Only the user whose only stream was on the killed process goes offline, once the ttl lapses.
            assert await next_presence(watching, only_a.id, timeout=PRESENCE_TTL + 10) == "offline"
            assert time.monotonic() - killed_at >= PRESENCE_TTL - 1.5
            assert await presence_of(http, watcher, only_a.id) == "offline"
            assert await presence_of(http, watcher, both.id) == "online"
            # A few ttls later nothing has changed for the user still connected to the live process.
            with contextlib.suppress(TimeoutError):
                status = await next_presence(watching, both.id, timeout=PRESENCE_TTL + 1)
                pytest.fail(f"presence of a user still connected changed to {status}")
            assert await presence_of(http, watcher, both.id) == "online"
            await wait_for_restart(replicas, "notify_server", victim)


async def fanout_leaders(stack: RunningStack) -> list[str]:
    """The notify instances that hold the fan-out lease (by their metrics)."""
    found = []
    for name in ("notify_server", "notify_server-2"):
        with contextlib.suppress(httpx.HTTPError):
            if await metric(instance_url(stack, name), "notify_fanout_leader") == 1.0:
                found.append(name)
    return found


async def test_fanout_goes_on_when_the_lease_holder_is_killed(replicas: RunningStack) -> None:
    """One notify instance fans out at a time (the holder of a lease); `kill -9` it and the fan-out goes
    on: messages sent meanwhile reach a stream on the other instance, each once."""
    async with httpx.AsyncClient(base_url=replicas.url, timeout=15) as http:
        owner, member = await team(http, 2)
        chat = await create_chat(http, owner, [member])
        url = f"/api/chat/{chat['id']}/messages"
        deadline = time.monotonic() + 15
        while len(leaders := await fanout_leaders(replicas)) != 1:
            assert time.monotonic() < deadline, f"fan-out lease held by {leaders}"
            await asyncio.sleep(0.3)
        (holder,) = leaders
        other = "notify_server-2" if holder == "notify_server" else "notify_server"
        async with sse_at(instance_url(replicas, other), member) as survivor:
            await survivor.next("connected")
            victim = replicas.state()["children"][holder]
            os.killpg(victim["pid"], signal.SIGKILL)
            sent = []
            for n in range(10):
                response = await http.post(url, headers=owner.auth, json={"content": f"after the kill {n}"})
                assert response.status_code == 201, response.text
                sent.append(response.json()["data"]["id"])
            got = []
            while len(got) < len(sent):
                got.append((await survivor.next("new_message", timeout=30))[1]["id"])
            # (In the order the two chat instances published them, which may differ from the sends'.)
            assert sorted(got) == sorted(sent) and len(set(got)) == len(got)
        # Then one instance holds the lease: the survivor, or the killed one's replacement if it was quicker.
        deadline = time.monotonic() + 15
        while len(leaders := await fanout_leaders(replicas)) != 1:
            assert time.monotonic() < deadline, f"fan-out lease held by {leaders}"
            await asyncio.sleep(0.3)
        await wait_for_restart(replicas, holder, victim)
