"""What the gateway costs: requests/s and latency of ``GET /api/users/me`` through the gateway and direct
to the chat API, measured in one run, in alternating rounds, with the same client.

    .venv/bin/python bench/gateway.py                  # starts its own stack in a temp dir, then stops it
    .venv/bin/python bench/gateway.py --seconds 3 --concurrency 16,64 --rounds 2
    .venv/bin/python bench/gateway.py --baseline /tmp/old-tree   # also a gateway from another checkout
    .venv/bin/python bench/gateway.py --baseline /tmp/old-tree --baseline-env GATEWAY_LOOP=asyncio

The client is ``wrk`` (one thread) when it is installed, else a small keep-alive HTTP/1.1 client on raw
asyncio streams (``--client python``), so that the client is not what is measured. The stack runs with
the gateway's rate limits on (one Redis round trip per request, as in production) but set high enough
never to refuse. ``--baseline DIR`` starts a second gateway whose ``gateway/`` package comes from DIR (an
older checkout), with the same configuration and upstreams, and measures it in the same rounds: a
before/after comparison on a shared machine. Goal (issue 8): at least 80% of direct throughput and at
most 1 ms added median latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.stackutil import REPO_ROOT, config_dir_with, free_ports, make_stack, stop_process_group  # noqa: E402

HIGH_LIMITS = """rate_limits:
  enabled: ${GATEWAY_RATE_LIMITS:-true}
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
    # wrk reports counts and percentiles, not every latency: rounds are combined by weighting.
    count: int = 0
    percentiles: dict[float, list[tuple[float, int]]] = field(default_factory=dict)

    def add(self, other: Result) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.seconds += other.seconds
        self.gateway_cpu += other.gateway_cpu
        self.count += other.count
        for q, values in other.percentiles.items():
            self.percentiles.setdefault(q, []).extend(values)

    @property
    def ok(self) -> int:
        return self.count or len(self.latencies)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if self.percentiles:
            values = self.percentiles.get(q, [])
            weight = sum(n for _, n in values)
            return sum(v * n for v, n in values) / weight if weight else float("nan")
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


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not found:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def _wrk_round(url: str, token: str, concurrency: int, seconds: float) -> Result:
    """One round with wrk (one thread, ``concurrency`` keep-alive connections)."""
    started = time.monotonic()
    out = subprocess.run(
        [
            *("wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency"),
            *("-H", f"Authorization: Bearer {token}", url),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = Result(seconds=time.monotonic() - started)
    total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
        result.statuses["socket"] = errors
    result.errors = errors
    result.count = total - (int(bad.group(1)) if bad else 0)
    # wrk's own duration is the one the count belongs to.
    duration = re.search(r"requests in ([\d.]+)(\w+)", out)
    if duration:
        result.seconds = _ms(duration.group(1) + duration.group(2)) / 1000
    for q, value in re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.MULTILINE):
        result.percentiles[int(q) / 100] = [(_ms(value), result.count)]
    if len(result.percentiles) < 2:
        print(f"wrk output without percentiles:\n{out}", file=sys.stderr)
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
    targets: dict[str, tuple[str, int | None]],
    token: str,
    concurrency: int,
    seconds: float,
    rounds: int,
    client: str,
) -> dict[str, Result]:
    """``targets``: name -> (base URL, pid whose CPU is counted or None); measured in turn, each round."""
    path = "/api/users/me"

    async def one(url: str, length: float) -> Result:
        if client == "wrk":
            return await asyncio.to_thread(_wrk_round, url, token, concurrency, length)
        return await _round(url, token, concurrency, length)

    totals = {name: Result() for name in targets}
    for base, _ in targets.values():
        await one(base + path, 1)  # warm-up
    for _ in range(rounds):
        for name, (base, pid) in targets.items():
            before = cpu_seconds(pid) if pid else 0.0
            result = await one(base + path, seconds)
            if pid:
                result.gateway_cpu = cpu_seconds(pid) - before
            totals[name].add(result)
    return totals


def report(totals: dict[str, Result], concurrency: int) -> str:
    direct = totals["direct"]
    lines = [
        f"GET /api/users/me, {concurrency} keep-alive connections",
        f"{'':10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU µs/req':>12}",
    ]
    for name, r in totals.items():
        served = r.ok + r.errors
        cpu = f"{r.gateway_cpu / served * 1e6:>12.0f}" if r.gateway_cpu and served else f"{'':>12}"
        lines.append(
            f"{name:10}{r.rps:>10.0f}{r.pct(0.5):>9.2f}{r.pct(0.99):>9.2f}{r.errors:>8}{cpu}"
            + (f"  {r.statuses}" if r.statuses else "")
        )
    for name, r in totals.items():
        if name == "direct" or not direct.rps:
            continue
        added_p50 = r.pct(0.5) - direct.pct(0.5)
        added_p99 = r.pct(0.99) - direct.pct(0.99)
        lines.append(
            f"{name}/direct throughput {r.rps / direct.rps:.0%}; "
            f"added p50 {added_p50:.2f} ms, added p99 {added_p99:.2f} ms"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def baseline_gateway(source: Path, gateway_pid: int, extra_env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """A second gateway process running ``source``'s ``gateway`` package with the stack gateway's
    environment (configuration, upstreams, Redis), changed by ``extra_env``, on a port of its own."""
    import httpx
    import psutil

    env = {**psutil.Process(gateway_pid).environ(), **extra_env}
    (port,) = free_ports(1)
    env["GATEWAY_PORT"] = str(port)
    env["GATEWAY_HOST"] = "127.0.0.1"
    # ``python -m gateway`` from ``source`` finds that tree's package first; the rest comes from here.
    env["PYTHONPATH"] = os.pathsep.join([str(source), str(REPO_ROOT)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        cwd=source,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the baseline gateway from {source} did not start")
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        stop_process_group(proc)


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
    parser.add_argument("--concurrency", default="16,64", help="connections; several separated by commas")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating direct/gateway rounds")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON too")
    parser.add_argument("--no-limits", action="store_true", help="run the gateway with rate limits off")
    parser.add_argument(
        "--client", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python"
    )
    parser.add_argument("--baseline", type=Path, help="a source tree whose gateway is measured too")
    parser.add_argument(
        "--baseline-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable set for the baseline gateway only (e.g. GATEWAY_LOOP=asyncio); may repeat",
    )
    args = parser.parse_args()
    levels = [int(c) for c in str(args.concurrency).split(",")]
    with tempfile.TemporaryDirectory(prefix="fechatter-bench-") as tmp:
        base = Path(tmp)
        text = (REPO_ROOT / "fixtures" / "gateway.yml").read_text()
        section = text[text.index("rate_limits:") : text.index("body_limits:")]
        config = config_dir_with(base / "config", "gateway", {section: HIGH_LIMITS})
        limits = "false" if args.no_limits else "true"
        stack = make_stack(base / "data", FECHATTER_CONFIG_DIR=str(config), GATEWAY_RATE_LIMITS=limits)
        stack.start()
        results: dict[int, dict[str, Result]] = {}
        try:
            direct = f"http://127.0.0.1:{stack.port('FECHATTER_PORT')}"
            token = asyncio.run(_token(stack.url))
            gateway_pid = stack.state()["children"]["gateway"]["pid"]
            targets: dict[str, tuple[str, int | None]] = {
                "direct": (direct, None),
                "gateway": (stack.url, gateway_pid),
            }
            with contextlib.ExitStack() as extra:
                if args.baseline:
                    extra_env = dict(item.split("=", 1) for item in args.baseline_env)
                    url, pid = extra.enter_context(
                        baseline_gateway(args.baseline.resolve(), gateway_pid, extra_env)
                    )
                    targets["baseline"] = (url, pid)
                for level in levels:
                    results[level] = asyncio.run(
                        measure(targets, token, level, args.seconds, args.rounds, args.client)
                    )
        finally:
            stack.stop()
    print(f"client: {args.client}")
    for level, totals in results.items():
        print(report(totals, level))
        print()
    if args.json:
        print(
            json.dumps(
                {
                    str(level): {
                        name: {
                            "rps": round(r.rps, 1),
                            "p50_ms": round(r.pct(0.5), 3),
                            "p99_ms": round(r.pct(0.99), 3),
                            "errors": r.errors,
                            "cpu_us_per_request": round(r.gateway_cpu / max(1, r.ok + r.errors) * 1e6),
                        }
                        for name, r in totals.items()
                    }
                    for level, totals in results.items()
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
