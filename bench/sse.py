"""SSE delivery benchmark: N SSE clients over M chats, a sender at R messages/s.

Reports delivery latency (message created -> line read by the client) p50/p99/max, events/s delivered,
errors, lost and duplicated events, and notify's RSS per connection; ``--idle`` also measures how many idle
connections one notify process holds and what each costs.

    .venv/bin/python bench/sse.py --clients 100 --chats 10 --rate 20 --seconds 10
    .venv/bin/python bench/sse.py --url http://127.0.0.1:8080 --data-dir ./data ...   # a running stack

Without ``--url`` it starts its own stack on free ports in a temporary directory and stops it afterwards.
Clients are spread over ``--users`` accounts (signing up is deliberately slow), each user in one chat.

Messages are sent by members of each chat from ``--senders`` separate processes, open loop: a send starts on
schedule whether or not earlier ones were answered, and reading a thousand streams in this process cannot
slow the sending down (with one process doing both, the offered rate was not reached).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.rawhttp import RawConnection
from tests.conftest import User, invite, signup
from tests.stackutil import RunningStack, make_stack

_encode = msgspec.json.Encoder().encode


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


SIGNUP_CONCURRENCY = 4


async def sign_up_members(api: httpx.AsyncClient, owner: User, count: int) -> list[User]:
    """Invited members, a few sign-ups at a time (each hashes a password, which takes a while)."""
    gate = asyncio.Semaphore(SIGNUP_CONCURRENCY)

    async def one() -> User:
        async with gate:
            return await signup(api, invite_code=await invite(api, owner))

    return list(await asyncio.gather(*(one() for _ in range(count))))


# One sender process's share: (chat id, Authorization header of a member who sends there).
SendPlan = list[tuple[int, str]]


SENDER_CONNECTIONS = 100


async def _send_open_loop(base: str, plan: SendPlan, rate: float, seconds: float) -> dict[str, Any]:
    sent: dict[int, list[int]] = {chat_id: [] for chat_id, _ in plan}
    errors = 0
    # Keep-alive connections per chat (each carries its sender's token), at most SENDER_CONNECTIONS in all:
    # past the server's capacity a send waits for a connection here (its delivery latency starts at the
    # message's creation on the server, so the wait is not counted), rather than piling up thousands of
    # new connections on the gateway's accept queue.
    idle: dict[int, list[RawConnection]] = {chat_id: [] for chat_id, _ in plan}
    opened: list[RawConnection] = []
    slots = asyncio.Semaphore(SENDER_CONNECTIONS)
    run = uuid.uuid4().hex

    async def send_one(n: int) -> None:
        async with slots:
            await send_on_a_connection(n)

    async def send_on_a_connection(n: int) -> None:
        nonlocal errors
        chat_id, authorization = plan[n % len(plan)]
        pool = idle[chat_id]
        if pool:
            connection = pool.pop()
        else:
            connection = RawConnection(base, {"Authorization": authorization})
            opened.append(connection)
        try:
            # The key makes the client's one reconnect-and-retry safe: a repeat returns the original.
            body = _encode({"content": f"bench {n}", "idempotency_key": f"bench-{run}-{n}"})
            status, answer = await connection.request(
                "POST", f"/api/chat/{chat_id}/messages", body, "application/json"
            )
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            return
        pool.append(connection)
        if status == 201:
            sent[chat_id].append(msgspec.json.decode(answer)["data"]["id"])
        else:
            errors += 1

    sends: list[asyncio.Task[None]] = []
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        sends.append(asyncio.create_task(send_one(n)))
        n += 1
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
    await asyncio.gather(*sends)
    elapsed = time.monotonic() - started
    for connection in opened:
        await connection.close()
    return {"sent": sent, "errors": errors, "elapsed": elapsed, "scheduled": n}


def _sender_main(base: str, plan: SendPlan, rate: float, seconds: float, out: Any) -> None:
    out.send(asyncio.run(_send_open_loop(base, plan, rate, seconds)))
    out.close()


async def send_from_processes(
    base: str, plan: SendPlan, rate: float, seconds: float, processes: int
) -> tuple[dict[int, list[int]], int, float, int]:
    """Each process sends to its share of the chats at its share of the rate."""
    context = multiprocessing.get_context("spawn")
    shares = [plan[k::processes] for k in range(processes) if plan[k::processes]]
    workers = []
    for share in shares:
        receiver, sender = context.Pipe(duplex=False)
        proc = context.Process(
            target=_sender_main, args=(base, share, rate * len(share) / len(plan), seconds, sender)
        )
        proc.start()
        sender.close()
        workers.append((proc, receiver))
    sent: dict[int, list[int]] = {}
    errors, elapsed, offered = 0, 0.0, 0
    for proc, receiver in workers:
        result = await asyncio.to_thread(receiver.recv)
        await asyncio.to_thread(proc.join)
        sent.update(result["sent"])
        errors += result["errors"]
        elapsed = max(elapsed, result["elapsed"])
        offered += result["scheduled"]
    return sent, errors, elapsed, offered


def notify_process(stack_dir: Path | None) -> psutil.Process | None:
    if stack_dir is None:
        return None
    state = json.loads((stack_dir / "stack.json").read_text())
    root = psutil.Process(state["children"]["notify_server"]["pid"])
    # Granian runs the app in a worker child process.
    children = root.children(recursive=True)
    return children[0] if children else root


async def fanout_held_back(stack_dir: Path | None) -> float | None:
    """How often notify's fan-out held fetched events back until an older one was written (it writes every
    user's log in the domain stream's order): a wait that adds to the delivery latency measured here."""
    if stack_dir is None:
        return None
    port = json.loads((stack_dir / "stack.json").read_text())["children"]["notify_server"]["port"]
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    for line in text.splitlines():
        if line.startswith("notify_fanout_held_back_total "):
            return float(line.split()[1])
    return None


def rss_mb(proc: psutil.Process | None) -> float:
    return proc.memory_info().rss / 2**20 if proc else float("nan")


async def bench(args: argparse.Namespace, base: str, data_dir: Path | None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        owner = await signup(api, workspace_name="Bench")
        users = [owner, *await sign_up_members(api, owner, args.users - 1)]
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

        # Each chat's messages come from one of its members (the owner when it has none).
        sender_of = {chat["id"]: owner for chat in chats}
        for user in reversed(users[1:]):
            sender_of[chat_of[user.id]] = user
        plan = [(chat["id"], sender_of[chat["id"]].auth["Authorization"]) for chat in chats]
        sent, send_errors, elapsed, offered = await send_from_processes(
            base, plan, args.rate, args.seconds, args.senders
        )
        sending_done = time.monotonic()
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
        drained = time.monotonic() - sending_done
        held_back = await fanout_held_back(data_dir)
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
        "messages_offered": offered,
        "messages_sent": sum(len(v) for v in sent.values()),
        "sent_per_second": round(sum(len(v) for v in sent.values()) / elapsed, 1),
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
        "fanout_held_back": held_back,
        "notify_rss_mb": {"before": round(rss_before, 1), "connected": round(rss_connected, 1)},
        "rss_per_connection_kb": round((rss_connected - rss_before) * 1024 / args.clients, 1),
    }


IDLE_OPEN_CONCURRENCY = 200


async def _open_idle_stream(url: str, authorization: str) -> asyncio.StreamWriter | None:
    """An SSE stream that has answered 200 and is then left unread, or None when it was refused."""
    parts = urlsplit(url)
    try:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(
            f"GET /sse HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: {authorization}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        return None
    if head[9:12] != b"200":
        writer.close()
        return None
    return writer


def raise_file_limit() -> int:
    """Each stream is a file descriptor here (and one in the server): lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def idle(args: argparse.Namespace, base: str, sse_url: str, data_dir: Path | None) -> dict[str, Any]:
    """Open ``--idle`` streams of one user and hold them; report how many stayed open and notify's RSS."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        user = await signup(api)
    authorization = user.auth["Authorization"]
    proc = notify_process(data_dir)
    before = rss_mb(proc)
    gate = asyncio.Semaphore(IDLE_OPEN_CONCURRENCY)

    async def open_one() -> asyncio.StreamWriter | None:
        async with gate:
            return await _open_idle_stream(sse_url, authorization)

    started = time.monotonic()
    writers = await asyncio.gather(*(open_one() for _ in range(args.idle)))
    opened = time.monotonic() - started
    held = [w for w in writers if w is not None]
    await asyncio.sleep(5)  # let the streams settle (presence writes, first pings)
    after = rss_mb(proc)
    still_open = sum(1 for w in held if not w.is_closing())
    for writer in held:
        writer.close()
    return {
        "idle_requested": args.idle,
        "idle_connections": still_open,
        "open_seconds": round(opened, 1),
        "via": sse_url,
        "notify_rss_mb": {"before": round(before, 1), "held": round(after, 1)},
        "rss_per_idle_connection_kb": round((after - before) * 1024 / max(still_open, 1), 1),
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
    parser.add_argument("--senders", type=int, default=2, help="sender processes")
    parser.add_argument("--idle", type=int, default=0, help="also hold this many idle connections")
    parser.add_argument(
        "--idle-url",
        help="where the idle streams connect (default: notify itself when the benchmark starts the stack, "
        "else --url): the measure is what one notify process holds, and through the gateway every stream "
        "would cost a second connection and port",
    )
    args = parser.parse_args()
    args.users = max(2, min(args.users, args.clients + 1))
    args.chats = min(args.chats, args.users - 1)

    file_limit = raise_file_limit()  # before the stack starts: its processes inherit it
    stack: RunningStack | None = None
    data_dir = args.data_dir
    base = args.url
    idle_url = args.idle_url
    if base is None:
        tmp = Path(tempfile.mkdtemp(prefix="fechatter-bench-"))
        stack = make_stack(tmp / "data", SIGNIN_PER_IP="100000")
        stack.start()
        base, data_dir = stack.url, stack.data_dir
        idle_url = idle_url or f"http://127.0.0.1:{stack.port('NOTIFY_PORT')}"
    try:
        report: dict[str, Any] = {}
        if args.clients:
            report = asyncio.run(bench(args, base, data_dir))
        if args.idle:
            report["idle"] = asyncio.run(idle(args, base, idle_url or base, data_dir))
            report["idle"]["file_limit"] = file_limit
    finally:
        if stack is not None:
            stack.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
