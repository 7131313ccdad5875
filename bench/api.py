"""Load benchmark of the chat API through the gateway (not a test).

Starts a whole stack on free ports in a temporary directory (as the end-to-end tests do), then measures:

- sends/s with p50/p99 latency at 16 and 64 concurrent clients (POST /api/chat/{id}/messages),
- history reads/s (GET /api/chat/{id}/messages?limit=50),
- the floor: the same send transaction issued straight through asyncpg (update the chat row, which locks
  it and bumps last_seq; insert the message; move the sender's read position; insert the outbox row),
- the benchmark client's own CPU use, so a saturated client is not mistaken for a slow server, and the CPU
  the chat API, the gateway and PostgreSQL spent per request,
- with ``--direct``, sends and history reads straight to the chat API as well, past the gateway,
- optionally a py-spy profile of the chat API during the 16-client send run.

Writes a markdown section to docs/benchmarks.md. Usage: ``python -m bench.api [--seconds 20] [--profile]
[--direct] [--no-floor] [--workers N]`` (``make bench``); ``--seconds 2`` is a quick smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.rawhttp import RawConnection  # noqa: E402
from tests.stackutil import RunningStack, make_stack  # noqa: E402


@dataclass
class Result:
    name: str
    clients: int
    count: int
    errors: int
    seconds: float
    latencies: list[float]
    client_cpu: float  # CPU seconds the benchmark process used during the run
    # CPU seconds each part of the stack used during the run (its processes and their children). On a
    # shared machine the rates swing with the neighbours' load; CPU per request barely does.
    server_cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    @property
    def client_cpu_percent(self) -> float:
        return 100 * self.client_cpu / self.seconds if self.seconds else 0.0

    def cpu_ms_per_request(self, part: str) -> float:
        return 1000 * self.server_cpu.get(part, 0.0) / self.count if self.count else float("nan")

    def rest_cpu_ms_per_request(self) -> float:
        """The CPU per request of every part of the stack not in CPU_PARTS."""
        rest = sum(used for part, used in self.server_cpu.items() if part not in CPU_PARTS)
        return 1000 * rest / self.count if self.count else float("nan")


async def closed_loop(
    name: str, clients: int, seconds: float, one: Any, probe: CpuProbe | None = None
) -> Result:
    """``clients`` workers each issue requests back to back for ``seconds``; ``one(worker, i)`` issues one
    and returns whether it succeeded."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal errors
        i = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            ok = await one(w, i)
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
            i += 1

    cpu = time.process_time()
    server_before = probe.read() if probe else {}
    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    elapsed = time.perf_counter() - started
    server_after = probe.read() if probe else {}
    server_cpu = {part: server_after[part] - server_before.get(part, 0.0) for part in server_after}
    return Result(
        name, clients, len(latencies), errors, elapsed, latencies, time.process_time() - cpu, server_cpu
    )


# The parts of the stack whose CPU the report shows on their own, by their name in the supervisor's state
# file; every other process of the stack (notify, NATS, Redis, the bot, analytics) is summed as the rest.
CPU_PARTS = ("fechatter_server", "gateway", "postgres")


class CpuProbe:
    """User plus system CPU seconds of each part of a running stack, its child processes included (Granian
    workers, PostgreSQL backends), read from /proc."""

    def __init__(self, stack: RunningStack) -> None:
        children = stack.state().get("children", {})
        self.roots = {part: child["pid"] for part, child in children.items() if child.get("pid")}
        self.tick = os.sysconf("SC_CLK_TCK")

    def read(self) -> dict[str, float]:
        parents: dict[int, int] = {}
        ticks: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # The command name may hold spaces; the fields after it are fixed.
                fields = stat.read_text().rsplit(")", 1)[1].split()
                pid = int(stat.parent.name)
                parents[pid] = int(fields[1])
                ticks[pid] = int(fields[11]) + int(fields[12])
        totals = dict.fromkeys(self.roots, 0.0)
        for pid, used in ticks.items():
            ancestor = pid
            while ancestor > 1:
                for part, root in self.roots.items():
                    if ancestor == root:
                        totals[part] += used / self.tick
                        break
                else:
                    ancestor = parents.get(ancestor, 0)
                    continue
                break
        return totals


# The suffix of a run's name when it went straight to the chat API.
_DIRECT = {False: "", True: " (direct)"}


class Bench:
    def __init__(self, stack: RunningStack, seconds: float) -> None:
        self.stack = stack
        self.seconds = seconds
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        self.http = httpx.AsyncClient(base_url=stack.url, timeout=30, limits=limits)
        self.token = ""
        self.user_id = 0
        self.workspace_id = 0
        self.chats: list[int] = []
        self.probe = CpuProbe(stack)

    async def setup(self, chats: int) -> None:
        body = {"email": f"bench-{uuid.uuid4().hex[:8]}@example.test", "password": "bench password 1"}
        response = await self.http.post(
            "/api/signup", json={**body, "fullname": "Bench", "workspace_name": "Bench"}
        )
        response.raise_for_status()
        session = response.json()["data"]
        self.token = session["access_token"]
        self.user_id = session["user"]["id"]
        self.workspace_id = session["workspace"]["id"]
        for i in range(chats):
            created = await self.http.post(
                "/api/workspace/chats",
                headers=self.auth,
                json={"name": f"bench-{i}", "chat_type": "PrivateChannel", "members": []},
            )
            assert created.status_code == 201, created.text
            self.chats.append(created.json()["data"]["id"])

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def connections(self, clients: int, direct: bool) -> list[RawConnection]:
        """One keep-alive connection per client, on the lean client (httpx would cost the benchmark process
        milliseconds of CPU per request and become what is measured). ``direct``: to the chat API itself,
        past the gateway."""
        url = f"http://127.0.0.1:{self.stack.port('FECHATTER_PORT')}" if direct else self.stack.url
        return [RawConnection(url, self.auth) for _ in range(clients)]

    async def sends(self, clients: int, direct: bool = False) -> Result:
        conns = self.connections(clients, direct)

        async def one(w: int, i: int) -> bool:
            # Each client writes to its own chat: this measures throughput, not one chat's row lock.
            chat = self.chats[w % len(self.chats)]
            body = b'{"content":"benchmark message %d from client %d"}' % (i, w)
            status, _ = await conns[w].request("POST", f"/api/chat/{chat}/messages", body, "application/json")
            return status == 201

        try:
            return await closed_loop("send" + _DIRECT[direct], clients, self.seconds, one, self.probe)
        finally:
            for conn in conns:
                await conn.close()

    async def history(self, clients: int, direct: bool = False) -> Result:
        conns = self.connections(clients, direct)

        async def one(w: int, i: int) -> bool:
            chat = self.chats[w % len(self.chats)]
            status, _ = await conns[w].request("GET", f"/api/chat/{chat}/messages?limit=50")
            return status == 200

        try:
            return await closed_loop("history" + _DIRECT[direct], clients, self.seconds, one, self.probe)
        finally:
            for conn in conns:
                await conn.close()

    async def floor(self, clients: int) -> Result:
        """The send transaction's statements straight through asyncpg, one connection per client."""
        pool = await asyncpg.create_pool(self.stack.database_url(), min_size=clients, max_size=clients)
        payload = msgspec.json.encode({"type": "message_created", "data": {"content": "x" * 64}})
        try:

            async def one(w: int, i: int) -> bool:
                chat = self.chats[w % len(self.chats)]
                async with pool.acquire() as conn, conn.transaction():
                    seq = await conn.fetchval(
                        "UPDATE chats SET last_seq = last_seq + 1, last_message_at = now()"
                        " WHERE id = $1 AND workspace_id = $2 AND EXISTS (SELECT 1 FROM chat_members"
                        " WHERE chat_id = $1 AND user_id = $3) RETURNING last_seq",
                        chat,
                        self.workspace_id,
                        self.user_id,
                    )
                    await conn.fetchrow(
                        "INSERT INTO messages (chat_id, seq, sender_id, content) VALUES ($1, $2, $3, $4)"
                        " ON CONFLICT ON CONSTRAINT messages_idempotency_key DO NOTHING RETURNING *",
                        chat,
                        seq,
                        self.user_id,
                        f"floor message {i} from client {w}",
                    )
                    await conn.execute(
                        "UPDATE chat_members SET last_read_seq = $3"
                        " WHERE chat_id = $1 AND user_id = $2 AND last_read_seq < $3",
                        chat,
                        self.user_id,
                        seq,
                    )
                    await conn.execute(
                        "INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)",
                        uuid.uuid4(),
                        "bench.floor",
                        payload,
                    )
                return True

            return await closed_loop("floor", clients, self.seconds, one, self.probe)
        finally:
            await pool.close()


def server_pid(stack: RunningStack) -> int | None:
    child = stack.state().get("children", {}).get("fechatter_server", {})
    return child.get("pid")


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return None
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


_FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def summarize_profile(path: Path, top: int = 15) -> list[str]:
    """Collapsed stacks → the functions with the most inclusive time, and a split by area."""
    if not path.exists():
        return ["(no profile was recorded)"]
    inclusive: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        seen: set[str] = set()
        for frame in frames:
            name = _short(frame)
            if name not in seen:
                inclusive[name] += count
                seen.add(name)
        areas[_area(frames[-1])] += count
        leaves[_short(frames[-1])] += count
    if not total:
        return ["(the profile is empty)"]
    lines = ["| where (leaf frame) | share of samples |", "|---|---|"]
    lines += [f"| {area} | {100 * n / total:.1f}% |" for area, n in areas.most_common()]
    lines += ["", "| function (inclusive) | share of samples |", "|---|---|"]
    interesting = [(n, c) for n, c in inclusive.most_common() if not _boring(n)]
    lines += [f"| `{name}` | {100 * c / total:.1f}% |" for name, c in interesting[:top]]
    lines += ["", "| function (self) | share of samples |", "|---|---|"]
    lines += [f"| `{name}` | {100 * c / total:.1f}% |" for name, c in leaves.most_common(top)]
    return lines


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()[:80]
    file = match.group("file")
    for marker in ("site-packages/", "/fechatter_", "/lib/python"):
        if marker in file:
            file = file.split(marker, 1)[1]
            if marker == "/fechatter_":
                file = "fechatter_" + file
            break
    return f"{match.group('func')} ({file})"


def _area(leaf: str) -> str:
    for key, area in (
        ("sqlalchemy", "SQLAlchemy"),
        ("asyncpg", "asyncpg"),
        ("litestar", "Litestar"),
        ("msgspec", "msgspec"),
        ("jwt", "PyJWT"),
        ("fechatter_", "our code"),
        ("nats", "nats"),
        ("asyncio", "asyncio event loop"),
        ("granian", "Granian"),
    ):
        if key in leaf:
            return area
    if "idle" in leaf or "select" in leaf or "epoll" in leaf:
        return "waiting"
    return "other (stdlib, interpreter)"


_BORING = re.compile(
    r"^(process \d+|<module>|_run_module_as_main|_run_code|run_service|run \(|_run_once|run_forever|"
    r"run_until_complete|_run \(|.*\((granian/server|multiprocessing)/)"
)


def _boring(name: str) -> bool:
    return bool(_BORING.match(name))


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f"{kb / 1024 / 1024:.1f} GiB"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "python": platform.python_version(),
        "load": load,
    }


def report(info: dict[str, str], seconds: float, results: list[Result], profile: list[str]) -> str:
    floors = {r.clients: r for r in results if r.name == "floor"}
    lines = [
        f"### {info['date']} — commit {info['commit']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, Python {info['python']}; "
        f"load average at the start {info['load']}. {seconds:g} s per run, closed loop (each client sends "
        "its next request when the previous one is answered), through the gateway.",
        "",
        "| run | clients | requests/s | p50 ms | p99 ms | errors | client CPU | floor ratio "
        "| CPU ms/request: chat API, gateway, PostgreSQL, rest |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = ""
        if r.name == "send" and r.clients in floors and floors[r.clients].rate:
            ratio = f"{r.rate / floors[r.clients].rate:.2f}"
        lines.append(
            f"| {r.name} | {r.clients} | {r.rate:,.0f} | {r.percentile(50):.1f} | {r.percentile(99):.1f} "
            f"| {r.errors} | {r.client_cpu_percent:.0f}% | {ratio} "
            f"| {', '.join(f'{r.cpu_ms_per_request(part):.2f}' for part in CPU_PARTS)}, "
            f"{r.rest_cpu_ms_per_request():.2f} |"
        )
    lines += [
        "",
        "*send*: `POST /api/chat/{id}/messages`, each client in its own chat. *history*: "
        "`GET /api/chat/{id}/messages?limit=50`. *floor*: the send transaction's four statements straight "
        "through asyncpg (no HTTP, no gateway, no ORM); the ratio is API sends/s ÷ floor sends/s at the same "
        "concurrency. *client CPU*: CPU used by the benchmark process itself, in % of one core — near 100% "
        "would mean the client, not the server, is the limit. *CPU ms/request*: CPU time each part of the "
        "stack spent per answered request during the run (all its processes); *rest* is the other parts "
        "together (notify, NATS, Redis, the bot, analytics). It varies far less than the rates when the "
        "machine is shared. *(direct)*: straight to the chat API, past the gateway.",
        "",
        "Profile of the chat API (py-spy, every process of fechatter_server, during the 16-client send run):",
        "",
        *profile,
        "",
    ]
    return "\n".join(lines)


async def run(
    seconds: float,
    profile: bool,
    keep_profile: Path | None = None,
    *,
    direct: bool = False,
    floor: bool = True,
    workers: int = 1,
) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="fechatter-bench-"))
    stack = make_stack(
        tmp / "data",
        FECHATTER_PG_DURABLE=os.environ.get("FECHATTER_PG_DURABLE", "1"),
        LOG_LEVEL="warning",
        SIGNIN_PER_IP="1000",
        FECHATTER_WORKERS=str(workers),
    )
    results: list[Result] = []
    profile_lines = ["(not profiled: run with --profile)"]
    try:
        print(f"starting a stack in {tmp} ...", flush=True)
        stack.start()
        bench = Bench(stack, seconds)
        await bench.setup(chats=64)
        # Warm up: connections in both pools, caches, the JIT-less interpreter's first paths.
        await bench.sends(8)
        for clients in (16, 64):
            spy = None
            raw = tmp / "profile.txt"
            pid = server_pid(stack)
            if profile and clients == 16 and pid:
                spy = start_profile(pid, seconds, raw)
            result = await bench.sends(clients)
            results.append(result)
            if spy is not None:
                try:
                    _, err = spy.communicate(timeout=seconds + 30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    err = b"timed out"
                profile_lines = summarize_profile(raw)
                if keep_profile is not None:
                    shutil.copy(raw, keep_profile)
                if spy.returncode:
                    profile_lines.append(
                        f"(py-spy exited {spy.returncode}: {err.decode(errors='replace')[:300]})"
                    )
            print(_line(result), flush=True)
        if direct:
            for clients in (16, 64):
                result = await bench.sends(clients, direct=True)
                results.append(result)
                print(_line(result), flush=True)
        if floor:
            for clients in (16, 64):
                result = await bench.floor(clients)
                results.append(result)
                print(_line(result), flush=True)
        for direct_read in (False, True) if direct else (False,):
            for clients in (16, 64):
                result = await bench.history(clients, direct=direct_read)
                results.append(result)
                print(_line(result), flush=True)
        await bench.http.aclose()
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return report(machine(), seconds, results, profile_lines)


def write_report(out: Path, section: str) -> None:
    """Put the section first among the runs of the "## API" part of docs/benchmarks.md (newest first)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        out.write_text("# Benchmarks\n\n## API (`make bench`, bench/api.py)\n\n")
    text = out.read_text()
    api = text.find("\n## API")
    if api < 0:
        out.write_text(text.rstrip("\n") + "\n\n## API (`make bench`, bench/api.py)\n\n" + section)
        return
    end = text.find("\n## ", api + 1)
    end = len(text) if end < 0 else end
    first_run = text.find("\n### ", api, end)
    at = first_run + 1 if first_run >= 0 else end
    out.write_text(text[:at].rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n\n" + text[at:].lstrip("\n"))


def _line(r: Result) -> str:
    cpu = "  ".join(f"{part} {r.cpu_ms_per_request(part):.2f}" for part in r.server_cpu)
    return (
        f"{r.name:8s} {r.clients:3d} clients: {r.rate:8.0f}/s  p50 {r.percentile(50):6.1f} ms  "
        f"p99 {r.percentile(99):6.1f} ms  errors {r.errors}  client CPU {r.client_cpu_percent:.0f}%  "
        f"CPU ms/request: {cpu}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each run")
    parser.add_argument("--profile", action="store_true", help="py-spy the chat API during a send run")
    parser.add_argument("--keep-profile", type=Path, help="also save py-spy's collapsed stacks here")
    parser.add_argument(
        "--direct", action="store_true", help="also send and read straight to the chat API, past the gateway"
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the asyncpg floor runs")
    parser.add_argument("--workers", type=int, default=1, help="Granian workers of the chat API")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    section = asyncio.run(
        run(
            args.seconds,
            args.profile,
            args.keep_profile,
            direct=args.direct,
            floor=not args.no_floor,
            workers=args.workers,
        )
    )
    write_report(args.out, section)
    print(section)


if __name__ == "__main__":
    main()
