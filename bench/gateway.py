"""What the gateway costs: requests/s and latency of ``GET /api/users/me`` through the gateway and direct
to the chat API, measured in one run, in alternating rounds, with the same client.

    .venv/bin/python bench/gateway.py                  # starts its own stack in a temp dir, then stops it
    .venv/bin/python bench/gateway.py --seconds 3 --concurrency 16 --rounds 2

The client is a small keep-alive HTTP/1.1 client on raw asyncio streams, so that the client is not
what is measured. The stack runs with the gateway's rate limits on (one Redis round trip per request, as
in production) but set high enough never to refuse. Goal (issue 8): at least 80% of direct throughput and
at most 1 ms added median latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.stackutil import REPO_ROOT, config_dir_with, make_stack  # noqa: E402

HIGH_LIMITS = """rate_limits:
  enabled: true
  per_ip: { limit: 100000000, window_seconds: 60 }
  auth: { limit: 100000000, window_seconds: 60 }
  send: { limit: 100000000, window_seconds: 60 }
  upload: { limit: 100000000, window_seconds: 60 }
  read: { limit: 100000000, window_seconds: 60 }
"""


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    gateway_cpu: float = 0.0
    seconds: float = 0.0

    def add(self, other: Result) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.seconds += other.seconds
        self.gateway_cpu += other.gateway_cpu

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def _worker(url: str, token: str, stop_at: float, result: Result) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    try:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length, chunked = 0, False
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                elif line.lower() == b"transfer-encoding: chunked":
                    chunked = True
            if chunked:
                while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                    await reader.readexactly(size + 2)
                await reader.readuntil(b"\r\n")
            else:
                await reader.readexactly(length)
            elapsed = time.perf_counter() - started
            if head.startswith(b"HTTP/1.1 200"):
                result.latencies.append(elapsed)
            else:
                result.errors += 1
                status = head[9:12].decode()
                result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _round(url: str, token: str, concurrency: int, seconds: float) -> Result:
    result = Result()
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(*(_worker(url, token, stop_at, result) for _ in range(concurrency)))
    result.seconds = time.monotonic() - started
    return result


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (Granian's workers): unlike latency on a busy machine,
    CPU per request does not depend on what else runs."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


async def measure(
    gateway: str, direct: str, token: str, concurrency: int, seconds: float, rounds: int, gateway_pid: int
) -> dict[str, Result]:
    path = "/api/users/me"
    totals = {"direct": Result(), "gateway": Result()}
    await _round(direct + path, token, concurrency, 0.5)  # warm-up
    await _round(gateway + path, token, concurrency, 0.5)
    for _ in range(rounds):
        totals["direct"].add(await _round(direct + path, token, concurrency, seconds))
        before = cpu_seconds(gateway_pid)
        result = await _round(gateway + path, token, concurrency, seconds)
        result.gateway_cpu = cpu_seconds(gateway_pid) - before
        totals["gateway"].add(result)
    return totals


def report(totals: dict[str, Result], concurrency: int) -> str:
    direct, gateway = totals["direct"], totals["gateway"]
    lines = [
        f"GET /api/users/me, {concurrency} keep-alive connections",
        f"{'':10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}",
    ]
    for name, r in totals.items():
        lines.append(
            f"{name:10}{r.rps:>10.0f}{r.pct(0.5):>9.2f}{r.pct(0.99):>9.2f}{r.errors:>8}"
            + (f"  {r.statuses}" if r.statuses else "")
        )
    added_p50 = gateway.pct(0.5) - direct.pct(0.5)
    added_p99 = gateway.pct(0.99) - direct.pct(0.99)
    lines.append(
        f"gateway/direct throughput {gateway.rps / direct.rps:.0%}; "
        f"added p50 {added_p50:.2f} ms, added p99 {added_p99:.2f} ms"
    )
    served = len(gateway.latencies) + gateway.errors
    if served:
        lines.append(f"gateway CPU per proxied request: {gateway.gateway_cpu / served * 1e6:.0f} µs")
    return "\n".join(lines)


async def _token(gateway: str) -> str:
    import httpx

    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        body = {
            "email": f"bench-{time.time_ns()}@example.test",
            "password": "correct horse 1",
            "fullname": "Bench",
            "workspace_name": "Bench",
        }
        response = await http.post("/api/signup", json=body)
        response.raise_for_status()
        return str(response.json()["data"]["access_token"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating direct/gateway rounds")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON too")
    parser.add_argument("--no-limits", action="store_true", help="run the gateway with rate limits off")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fechatter-bench-") as tmp:
        base = Path(tmp)
        text = (REPO_ROOT / "fixtures" / "gateway.yml").read_text()
        section = text[text.index("rate_limits:") : text.index("body_limits:")]
        config = config_dir_with(base / "config", "gateway", {section: HIGH_LIMITS})
        stack = make_stack(base / "data", FECHATTER_CONFIG_DIR=str(config), GATEWAY_RATE_LIMITS="true")
        stack.start()
        try:
            direct = f"http://127.0.0.1:{stack.port('FECHATTER_PORT')}"
            token = asyncio.run(_token(stack.url))
            gateway_pid = stack.state()["children"]["gateway"]["pid"]
            totals = asyncio.run(
                measure(stack.url, direct, token, args.concurrency, args.seconds, args.rounds, gateway_pid)
            )
        finally:
            stack.stop()
    print(report(totals, args.concurrency))
    if args.json:
        print(
            json.dumps(
                {
                    name: {
                        "rps": round(r.rps, 1),
                        "p50_ms": round(r.pct(0.5), 3),
                        "p99_ms": round(r.pct(0.99), 3),
                        "errors": r.errors,
                        "gateway_cpu_us_per_request": round(
                            r.gateway_cpu / max(1, len(r.latencies) + r.errors) * 1e6
                        ),
                    }
                    for name, r in totals.items()
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
