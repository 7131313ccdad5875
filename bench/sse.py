"""SSE delivery benchmark: N SSE clients over M chats, a sender at R messages/s.

Reports delivery latency (message created -> line read by the client) p50/p99/max, events/s delivered,
errors, lost and duplicated events, and notify's RSS per connection; ``--idle`` also measures how many idle
connections one notify process holds and what each costs.

    .venv/bin/python bench/sse.py --clients 100 --chats 10 --rate 20 --seconds 10
    .venv/bin/python bench/sse.py --url http://127.0.0.1:8080 --data-dir ./data ...   # a running stack

Without ``--url`` it starts its own stack on free ports in a temporary directory and stops it afterwards.
Clients are spread over ``--users`` accounts (signing up is deliberately slow), each user in one chat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import User, invite, signup
from tests.stackutil import RunningStack, make_stack


class Client:
    def __init__(self, user: User, chat_id: int) -> None:
        self.user = user
        self.chat_id = chat_id
        self.received: list[int] = []
        self.latencies: list[float] = []
        self.errors = 0
        self.ready = asyncio.Event()

    async def run(self, base: str, stop: asyncio.Event) -> None:
        """Read the stream on a raw connection: a thousand httpx streams in one process would make the
        benchmark's own CPU, not delivery, the limit (the latency measured ends when this process reads the
        line)."""
        parts = urlsplit(base)
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            token = self.user.auth["Authorization"]
            writer.write(
                f"GET /sse HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: {token}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if head[9:12] != b"200":
                self.errors += 1
                return
            chunked = b"transfer-encoding: chunked" in head.lower()
            buffer = b""
            event = b""
            while not stop.is_set():
                if chunked:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        break
                    buffer += (await reader.readexactly(size + 2))[:-2]
                else:
                    data = await reader.read(65536)
                    if not data:
                        break
                    buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.startswith(b"event:"):
                        event = line[6:].strip()
                        if event == b"connected":
                            self.ready.set()
                    elif line.startswith(b"data:") and event == b"new_message":
                        message = msgspec.json.decode(line[5:])
                        created = datetime.fromisoformat(message["created_at"].replace("Z", "+00:00"))
                        self.latencies.append(time.time() - created.timestamp())
                        self.received.append(message["id"])
        except (OSError, asyncio.IncompleteReadError, ValueError):
            if not stop.is_set():
                self.errors += 1
        except asyncio.CancelledError:
            pass
        finally:
            if writer is not None:
                writer.close()
            self.ready.set()


def notify_process(stack_dir: Path | None) -> psutil.Process | None:
    if stack_dir is None:
        return None
    state = json.loads((stack_dir / "stack.json").read_text())
    root = psutil.Process(state["children"]["notify_server"]["pid"])
    # Granian runs the app in a worker child process.
    children = root.children(recursive=True)
    return children[0] if children else root


def rss_mb(proc: psutil.Process | None) -> float:
    return proc.memory_info().rss / 2**20 if proc else float("nan")


async def bench(args: argparse.Namespace, base: str, data_dir: Path | None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        owner = await signup(api, workspace_name="Bench")
        users = [owner]
        for _ in range(args.users - 1):
            users.append(await signup(api, invite_code=await invite(api, owner)))
        chats = []
        for c in range(args.chats):
            members = [u.id for i, u in enumerate(users[1:]) if i % args.chats == c]
            body = {"name": f"bench {c}", "chat_type": "PrivateChannel", "members": members}
            chats.append(
                (await api.post("/api/workspace/chats", headers=owner.auth, json=body)).json()["data"]
            )
        chat_of = {u.id: chats[i % args.chats]["id"] for i, u in enumerate(users[1:])}

        proc = notify_process(data_dir)
        rss_before = rss_mb(proc)
        stop = asyncio.Event()
        clients = [Client(users[1 + i % (len(users) - 1)], 0) for i in range(args.clients)]
        for client in clients:
            client.chat_id = chat_of[client.user.id]
        tasks = [asyncio.create_task(c.run(base, stop)) for c in clients]
        await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients)), 120)
        rss_connected = rss_mb(proc)

        sent: dict[int, list[int]] = {chat["id"]: [] for chat in chats}
        send_errors = 0

        async def send_one(n: int) -> None:
            nonlocal send_errors
            chat = chats[n % len(chats)]
            try:
                response = await api.post(
                    f"/api/chat/{chat['id']}/messages", headers=owner.auth, json={"content": f"bench {n}"}
                )
            except httpx.HTTPError:
                send_errors += 1
                return
            if response.status_code == 201:
                sent[chat["id"]].append(response.json()["data"]["id"])
            else:
                send_errors += 1

        # Open loop: a send starts on schedule whether or not the previous one has been answered, so the
        # rate is the one asked for, not what one waiting sender manages.
        sends: list[asyncio.Task[None]] = []
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < args.seconds:
            sends.append(asyncio.create_task(send_one(n)))
            n += 1
            await asyncio.sleep(max(0.0, started + n / args.rate - time.monotonic()))
        await asyncio.gather(*sends)
        elapsed = time.monotonic() - started
        # Let the backlog drain: wait until every client has every message of its chat, or until nothing has
        # arrived for 10 s (what is missing then is lost, not late).
        expected = sum(len(sent[c.chat_id]) for c in clients)
        last_count, last_change = -1, time.monotonic()
        while True:
            count = sum(len(c.received) for c in clients)
            if count >= expected:
                break
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > 10:
                break
            await asyncio.sleep(0.5)
        drained = time.monotonic() - started - elapsed
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    latencies = sorted(x for c in clients for x in c.latencies)
    lost = sum(len(set(sent[c.chat_id]) - set(c.received)) for c in clients)
    duplicated = sum(len(c.received) - len(set(c.received)) for c in clients)
    delivered = sum(len(c.received) for c in clients)

    def pct(p: float) -> float:
        return (
            round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else 0
        )

    return {
        "clients": args.clients,
        "chats": args.chats,
        "rate": args.rate,
        "seconds": round(elapsed, 1),
        "drain_seconds": round(drained, 1),
        "messages_sent": sum(len(v) for v in sent.values()),
        "events_delivered": delivered,
        "events_per_second": round(delivered / (elapsed + drained), 1),
        "latency_ms": {
            "p50": pct(0.5),
            "p99": pct(0.99),
            "max": round(latencies[-1] * 1000, 1) if latencies else 0,
            "mean": round(statistics.fmean(latencies) * 1000, 1) if latencies else 0,
        },
        "errors": sum(c.errors for c in clients) + send_errors,
        "lost": lost,
        "duplicated": duplicated,
        "notify_rss_mb": {"before": round(rss_before, 1), "connected": round(rss_connected, 1)},
        "rss_per_connection_kb": round((rss_connected - rss_before) * 1024 / args.clients, 1),
    }


async def idle(args: argparse.Namespace, base: str, data_dir: Path | None) -> dict[str, Any]:
    """Open ``--idle`` connections of one user and hold them; report how many stayed open and the RSS."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        user = await signup(api)
    proc = notify_process(data_dir)
    before = rss_mb(proc)
    limits = httpx.Limits(max_connections=args.idle + 10)
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(60), limits=limits) as http:
        responses = []
        for _ in range(args.idle):
            try:
                request = http.build_request("GET", "/sse", headers=user.auth)
                responses.append(await http.send(request, stream=True))
            except httpx.HTTPError:
                break
        await asyncio.sleep(2)
        after = rss_mb(proc)
        held = sum(1 for r in responses if r.status_code == 200)
        for response in responses:
            await response.aclose()
    return {
        "idle_connections": held,
        "notify_rss_mb": {"before": round(before, 1), "held": round(after, 1)},
        "rss_per_idle_connection_kb": round((after - before) * 1024 / max(held, 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="gateway of a running stack (default: start one)")
    parser.add_argument("--data-dir", type=Path, help="that stack's data dir (for notify's RSS)")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--chats", type=int, default=10)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=0, help="also hold this many idle connections")
    args = parser.parse_args()
    args.users = max(2, min(args.users, args.clients + 1))
    args.chats = min(args.chats, args.users - 1)

    stack: RunningStack | None = None
    data_dir = args.data_dir
    base = args.url
    if base is None:
        tmp = Path(tempfile.mkdtemp(prefix="fechatter-bench-"))
        stack = make_stack(tmp / "data", SIGNIN_PER_IP="100000")
        stack.start()
        base, data_dir = stack.url, stack.data_dir
    try:
        report = asyncio.run(bench(args, base, data_dir))
        if args.idle:
            report["idle"] = asyncio.run(idle(args, base, data_dir))
    finally:
        if stack is not None:
            stack.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
