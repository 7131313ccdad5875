"""The gateway process in front of services whose side the test can see (tests/upstream_stub.py): bodies
stream both ways without being held whole, active health checks take a failing instance out of rotation
and put it back, and X-Forwarded-For is believed only from trusted proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.stackutil import REPO_ROOT, config_dir_with, free_ports, stop_process_group
from tests.upstream_stub import HOLD_BYTES, UpstreamStub

pytestmark = pytest.mark.e2e

FAST_CHECKS = """health_checks:
  enabled: true
  interval_seconds: 0.3
  timeout_seconds: 0.5
  unhealthy_after: 2
  healthy_after: 2
"""
MIB = 1024 * 1024


class Gateway:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def peak_rss(self) -> int:
        """The highest resident memory any gateway process has had (VmHWM), in bytes."""
        root = psutil.Process(self.proc.pid)
        peaks = []
        for proc in [root, *root.children(recursive=True)]:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) * 1024)
        return max(peaks)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, chat: list[UpstreamStub], **env: str) -> AsyncIterator[Gateway]:
    """A gateway process whose chat API upstream is ``chat`` (the other services at dead ports)."""
    text = (REPO_ROOT / "fixtures" / "gateway.yml").read_text()
    section = text[text.index("health_checks:") : text.index("# Proxies in front")]
    config = config_dir_with(tmp_path / "config", "gateway", {section: FAST_CHECKS})
    port, dead = free_ports(2)
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FECHATTER_", "GATEWAY_"))},
        "FECHATTER_CONFIG_DIR": str(config),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "JWT_SECRET": "upstream-test-secret-0123456789abcdef",
        "GATEWAY_RATE_LIMITS": "false",
        "LOG_LEVEL": "info",
        "FECHATTER_UPSTREAM": ",".join(stub.url for stub in chat),
        "NOTIFY_UPSTREAM": f"http://127.0.0.1:{dead}",
        "BOT_UPSTREAM": f"http://127.0.0.1:{dead}",
        "ANALYTICS_UPSTREAM": f"http://127.0.0.1:{dead}",
        **env,
    }
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Gateway(proc, f"http://127.0.0.1:{port}", log)
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(running.url + "/health")).status_code == 200:
                        break
                assert proc.poll() is None, running.log_text()
                assert time.monotonic() < deadline, running.log_text()
                await asyncio.sleep(0.1)
        yield running
    finally:
        stop_process_group(proc)


@contextlib.asynccontextmanager
async def stubs(*names: str) -> AsyncIterator[list[UpstreamStub]]:
    started = [UpstreamStub(name) for name in names]
    for stub in started:
        await stub.start()
    try:
        yield started
    finally:
        for stub in started:
            await stub.stop()


async def wait_for(condition: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# -- streaming ---------------------------------------------------------------------------------------


async def test_a_request_body_reaches_the_service_before_the_client_has_sent_it_all(tmp_path: Path) -> None:
    async with stubs("chat") as (chat,), gateway(tmp_path, [chat]) as gw:

        async def body() -> AsyncIterator[bytes]:
            yield b"x" * (256 * 1024)
            # The rest is sent only once the service has seen the first part: a gateway that read the
            # whole body before passing it on would wait here forever.
            await asyncio.wait_for(chat.body_started.wait(), 10)
            for _ in range(4):
                yield b"y" * (256 * 1024)

        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            response = await http.post("/api/upload", content=body())
            assert response.status_code == 200, response.text
            assert response.json() == {"received": 5 * 256 * 1024}
            # A sized body streams too.
            chat.body_started.clear()
            sized = await http.post(
                "/api/upload", content=b"z" * (2 * MIB), headers={"content-type": "application/octet-stream"}
            )
            assert sized.json() == {"received": 2 * MIB}


async def test_a_response_reaches_the_client_before_the_service_has_sent_it_all(tmp_path: Path) -> None:
    async with stubs("chat") as (chat,), gateway(tmp_path, [chat]) as gw:
        size = HOLD_BYTES + 3 * MIB
        async with (
            httpx.AsyncClient(base_url=gw.url, timeout=30) as http,
            http.stream("GET", "/api/download", params={"size": size, "hold": 1}) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-length"] == str(size)
            received = 0
            chunks = response.aiter_raw()
            # The service holds the rest back until the client has the first part.
            while received < HOLD_BYTES:
                received += len(await asyncio.wait_for(chunks.__anext__(), 10))
            assert not chat.release.is_set()
            chat.release.set()
            async for chunk in chunks:
                received += len(chunk)
            assert received == size


async def test_the_gateway_memory_does_not_grow_with_the_body_size(tmp_path: Path) -> None:
    big = 96 * MIB
    env = {"GATEWAY_UPLOAD_MAX_BYTES": str(128 * MIB)}
    async with stubs("chat") as (chat,), gateway(tmp_path, [chat], **env) as gw:
        async with httpx.AsyncClient(base_url=gw.url, timeout=60) as http:
            # Warm up (code paths, buffers), then take the high-water mark.
            await http.post("/api/upload", content=b"w" * MIB)
            async with http.stream("GET", "/api/download", params={"size": MIB}) as response:
                await response.aread()
            before = gw.peak_rss()

            async def body() -> AsyncIterator[bytes]:
                piece = b"u" * MIB
                for _ in range(big // MIB):
                    yield piece

            response = await http.post("/api/upload", content=body())
            assert response.json() == {"received": big}
            async with http.stream("GET", "/api/download", params={"size": big}) as response:
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
            assert received == big
        grown = gw.peak_rss() - before
        # Holding either body whole would take 96 MiB; streaming takes a few buffers.
        assert grown < 24 * MIB, f"the gateway grew by {grown / MIB:.1f} MiB"


async def test_a_streamed_body_over_the_limit_is_refused_and_never_completes(tmp_path: Path) -> None:
    env = {"GATEWAY_UPLOAD_MAX_BYTES": str(MIB)}
    async with stubs("chat") as (chat,), gateway(tmp_path, [chat], **env) as gw:

        async def body() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"o" * (256 * 1024)

        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            response = await http.post("/api/upload", content=body())
            assert response.status_code == 413, response.text
            assert response.json()["error"]["code"] == "payload_too_large"
            assert chat.uploads_completed == 0
            # The gateway goes on serving.
            ok = await http.post("/api/upload", content=b"k" * 1000)
            assert ok.json() == {"received": 1000}


async def test_answers_without_a_body_leave_the_connection_usable(tmp_path: Path) -> None:
    async with (
        stubs("chat") as (chat,),
        gateway(tmp_path, [chat]) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as http,
    ):
        for _ in range(3):
            head = await http.head("/api/who")
            assert head.status_code == 200
            assert head.content == b""
            assert int(head.headers["content-length"]) > 0
            for code in (204, 304):
                empty = await http.get("/api/status", params={"code": code})
                assert empty.status_code == code
                assert empty.content == b""
            got = await http.get("/api/who")
            assert got.json()["server"] == "chat"
        # Chunked bodies, large and empty, arrive whole.
        for size in (0, 1, 300_000):

            async def body(size: int = size) -> AsyncIterator[bytes]:
                if size:
                    yield b"c" * size

            response = await http.post("/api/upload", content=body())
            assert response.json() == {"received": size}


async def test_head_keeps_its_upstream_connection(tmp_path: Path) -> None:
    """The answer to HEAD has no body though its Content-Length is the GET body's: the gateway ends the
    exchange at the head, so the client gets the headers at once and the connection serves the next
    request."""
    async with (
        stubs("chat") as (chat,),
        gateway(tmp_path, [chat]) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as http,
    ):
        got = await http.get("/api/who")
        head = await http.head("/api/who")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == "application/json"
        assert head.headers["content-length"] == got.headers["content-length"]
        assert head.headers["x-content-type-options"] == "nosniff"
        again = await http.get("/api/who")
        assert again.json()["server"] == "chat"
        await http.head("/api/who")
        await http.get("/api/who")
        # One request at a time: all five on one connection to the service.
        assert chat.hits == ["/api/who"] * 5
        assert set(chat.hit_connections) == {chat.hit_connections[0]}, chat.hit_connections


async def test_requests_with_small_bodies_reuse_their_upstream_connection(tmp_path: Path) -> None:
    """A message send is a small JSON body. It is read whole before it goes on, so it takes a kept
    connection like a GET, rather than a new TCP connection per request."""
    async with (
        stubs("chat") as (chat,),
        gateway(tmp_path, [chat]) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as http,
    ):
        for size in (2, 1000, 60_000):
            response = await http.post("/api/upload", json={"content": "m" * size})
            assert response.status_code == 200, response.text
            assert response.json() == {"received": size + len('{"content":""}')}
        assert (await http.get("/api/who")).status_code == 200
        assert len(chat.hit_connections) == 4
        assert set(chat.hit_connections) == {chat.hit_connections[0]}, chat.hit_connections


async def test_a_broken_kept_connection_is_retried_only_for_a_message_send_with_its_key(
    tmp_path: Path,
) -> None:
    """The service closes a kept connection as a request arrives on it. A message send carrying an
    Idempotency-Key goes again on a new connection (a repeat returns the original message); another POST
    with the header is not repeated, since nothing there honours the key: the client gets 502."""
    async with (
        stubs("chat") as (chat,),
        gateway(tmp_path, [chat]) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as http,
    ):
        assert (await http.get("/api/who")).status_code == 200  # leaves a kept connection
        chat.close_kept_connections = True
        key = {"Idempotency-Key": "k-1"}
        sent = await http.post("/api/chat/7/messages", headers=key, json={"content": "hi"})
        assert sent.status_code == 200, sent.text
        assert sent.json()["path"] == "/api/chat/7/messages"
        other = await http.post("/api/workspace/chats", headers=key, json={"name": "x"})
        assert other.status_code == 502, other.text
        assert other.json()["error"]["code"] == "bad_gateway"
        assert chat.hits.count("/api/workspace/chats") == 0  # never answered, never sent twice


async def test_a_streamed_body_never_goes_on_a_connection_the_service_may_have_closed(tmp_path: Path) -> None:
    """A body that streams cannot be sent again: it goes on a new connection, not on a kept one that the
    service may be closing (here: every kept connection is closed when a request comes on it)."""
    async with (
        stubs("chat") as (chat,),
        gateway(tmp_path, [chat]) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=20) as http,
    ):
        assert (await http.get("/api/who")).status_code == 200  # leaves a kept connection
        chat.close_kept_connections = True

        async def body() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"s" * (128 * 1024)
                await asyncio.sleep(0.01)

        response = await http.post("/api/upload", content=body())
        assert response.status_code == 200, response.text
        assert response.json() == {"received": 8 * 128 * 1024}


async def test_a_service_failing_during_a_streamed_upload_answers_502(tmp_path: Path) -> None:
    """Not sent again (the body is gone), but answered: 502 in the envelope, not a hang or a reset."""
    async with (
        stubs("chat") as (chat,),
        gateway(tmp_path, [chat]) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=20) as http,
    ):

        async def body() -> AsyncIterator[bytes]:
            for _ in range(7):  # within the 1 MiB body limit of the route
                yield b"d" * (128 * 1024)
                await asyncio.sleep(0.02)

        response = await http.post("/api/upload-then-die", content=body())
        assert response.status_code == 502, response.text
        assert response.json() == {
            "success": False,
            "error": {"code": "bad_gateway", "message": "fechatter_server failed to answer"},
        }
        assert chat.uploads_completed == 0
        ok = await http.post("/api/upload", content=b"k" * 1000)
        assert ok.json() == {"received": 1000}


async def test_connections_stay_in_step_after_streamed_bodies(tmp_path: Path) -> None:
    """Streamed bodies and the requests after them are answered in step, whatever the order in which a
    body's end and its answer were noticed."""
    async with (
        stubs("chat") as (chat,),
        gateway(tmp_path, [chat]) as gw,
    ):

        async def client() -> None:
            async with httpx.AsyncClient(base_url=gw.url, timeout=20) as http:
                for _ in range(15):

                    async def body() -> AsyncIterator[bytes]:
                        yield b"p" * 1000
                        await asyncio.sleep(0.005)  # so that the body arrives in parts
                        yield b"q" * 1000

                    posted = await http.post("/api/upload", content=body())
                    assert posted.json() == {"received": 2000}
                    got = await http.get("/api/who")
                    assert got.status_code == 200, got.text

        await asyncio.gather(*(client() for _ in range(6)))
        assert "panicked" not in gw.log_text()


# -- connections per instance -------------------------------------------------------------------------


async def test_connections_per_instance_are_capped_and_streams_do_not_count(tmp_path: Path) -> None:
    async with stubs("chat") as (chat,):
        env = {
            "GATEWAY_UPSTREAM_MAX_CONNECTIONS": "2",
            "GATEWAY_UPSTREAM_POOL_WAIT": "0.5",
            "NOTIFY_UPSTREAM": chat.url,  # so that /sse reaches the stub too
        }
        async with (
            gateway(tmp_path, [chat], **env) as gw,
            httpx.AsyncClient(base_url=gw.url, timeout=10) as http,
            contextlib.AsyncExitStack() as held,
        ):

            async def hold(path: str) -> None:
                # A response the service holds back: its connection stays busy until ``release``.
                response = await held.enter_async_context(
                    http.stream("GET", path, params={"size": HOLD_BYTES + 1, "hold": 1})
                )
                assert response.status_code == 200
                await asyncio.wait_for(response.aiter_raw().__anext__(), 10)

            # Streams (SSE) have connections of their own: more of them than the cap leave the API served.
            for _ in range(3):
                await hold("/sse/download")
            assert (await http.get("/api/who")).status_code == 200

            # Two API requests in flight take both connections: a third waits, then gets a clear 503.
            await hold("/api/download")
            await hold("/api/download")
            started = time.monotonic()
            busy = await http.get("/api/who")
            assert busy.status_code == 503, busy.text
            assert busy.json() == {
                "success": False,
                "error": {"code": "unavailable", "message": "fechatter_server is busy; retry shortly"},
            }
            assert busy.headers["retry-after"] == "1"
            assert 0.4 < time.monotonic() - started < 5

            # One that comes free within the wait serves the waiting request.
            waiting = asyncio.ensure_future(http.get("/api/who"))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            chat.release.set()
            assert (await waiting).status_code == 200
        api = [n for path, n in zip(chat.hits, chat.hit_connections, strict=True) if path.startswith("/api")]
        assert len(set(api)) <= 2, chat.hit_connections
        assert "fechatter_server at " + chat.url + " is busy" in gw.log_text()


async def test_slow_uploads_do_not_hold_the_connections_other_requests_need(tmp_path: Path) -> None:
    env = {"GATEWAY_UPSTREAM_MAX_CONNECTIONS": "2", "GATEWAY_UPSTREAM_POOL_WAIT": "0.5"}
    async with (
        stubs("chat") as (chat,),
        gateway(tmp_path, [chat], **env) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=20) as http,
    ):
        go_on = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield b"u" * 1000
            await go_on.wait()  # a client that takes its time sending the rest
            yield b"v" * 1000

        uploads = [asyncio.ensure_future(http.post("/api/upload", content=slow_body())) for _ in range(3)]
        await asyncio.sleep(0.5)
        # More uploads in progress than the cap allows connections, and the API is still served.
        for _ in range(3):
            response = await http.get("/api/who")
            assert response.status_code == 200, response.text
        go_on.set()
        for upload in uploads:
            assert (await upload).json() == {"received": 2000}


async def test_an_instance_with_every_connection_busy_is_passed_over(tmp_path: Path) -> None:
    env = {"GATEWAY_UPSTREAM_MAX_CONNECTIONS": "1", "GATEWAY_UPSTREAM_POOL_WAIT": "0.5"}
    async with (
        stubs("a", "b") as (a, b),
        gateway(tmp_path, [a, b], **env) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as http,
        http.stream("GET", "/api/download", params={"size": HOLD_BYTES + 1, "hold": 1}) as held,
    ):
        await asyncio.wait_for(held.aiter_raw().__anext__(), 10)
        busy = a if a.hits else b
        for _ in range(4):
            # Round-robin would send every other request to the busy instance, to wait and get a 503.
            response = await http.get("/api/who")
            assert response.status_code == 200, response.text
        assert busy.hits == ["/api/download"]
        a.release.set()
        b.release.set()


# -- active health checks ----------------------------------------------------------------------------


def in_rotation(metrics: str, server: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith("gateway_upstream_in_rotation{") and f'server="{server}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_an_instance_failing_its_health_checks_leaves_the_rotation_and_comes_back(
    tmp_path: Path,
) -> None:
    async with (
        stubs("a", "b") as (a, b),
        gateway(tmp_path, [a, b]) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as http,
    ):

        async def spread(n: int) -> tuple[int, int]:
            a.hits.clear()
            b.hits.clear()
            for _ in range(n):
                response = await http.get("/api/who")
                assert response.status_code == 200, response.text
            return len(a.hits), len(b.hits)

        async def rotation(server: str) -> float | None:
            return in_rotation((await http.get("/metrics")).text, server)

        assert await spread(10) == (5, 5)
        await wait_for(lambda: a.health_probes >= 2 and b.health_probes >= 2)

        # Its /health says it is down (a 503): out after two failed probes.
        a.health_status = 503
        deadline = time.monotonic() + 10
        while await rotation(a.url) != 0.0:
            assert time.monotonic() < deadline, gw.log_text()
            await asyncio.sleep(0.1)
        assert await spread(10) == (0, 10)
        assert f"fechatter_server at {a.url} taken out of rotation" in gw.log_text()

        # Healthy again: back after two passed probes.
        a.health_status = 200
        deadline = time.monotonic() + 10
        while await rotation(a.url) != 1.0:
            assert time.monotonic() < deadline, gw.log_text()
            await asyncio.sleep(0.1)
        assert await spread(10) == (5, 5)
        assert f"fechatter_server at {a.url} is back in rotation" in gw.log_text()

        # A /health that does not answer in time counts as failed too.
        b.health_hang = True
        deadline = time.monotonic() + 10
        while await rotation(b.url) != 0.0:
            assert time.monotonic() < deadline, gw.log_text()
            await asyncio.sleep(0.1)
        assert await spread(6) == (6, 0)

        # With every instance out of rotation, they are all still tried rather than none.
        a.health_status = 503
        deadline = time.monotonic() + 10
        while await rotation(a.url) != 0.0:
            assert time.monotonic() < deadline, gw.log_text()
            await asyncio.sleep(0.1)
        assert sum(await spread(4)) == 4
        b.health_hang = False


# -- trusted proxies ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def client_at(gw: Gateway, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=gw.url, timeout=10, transport=transport) as http:
        yield http


async def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    env = {"GATEWAY_TRUSTED_PROXIES": "127.0.0.77, 10.0.0.0/8"}
    async with stubs("chat") as (chat,), gateway(tmp_path, [chat], **env) as gw:
        async with client_at(gw, "127.0.0.77") as proxy:
            # The rightmost address that is not a trusted proxy is the client; what is left of it was
            # written by the client and proves nothing.
            chain = {"X-Forwarded-For": "203.0.113.5, 198.51.100.7, 10.1.2.3"}
            await proxy.get("/api/who", headers=chain, params={"probe": "trusted"})
            await proxy.get("/api/who", headers={"X-Forwarded-For": "198.51.100.8"})
            await proxy.get("/api/who")  # no header: the proxy itself is the client
            await proxy.get("/api/who", headers={"X-Forwarded-For": "not-an-address"})
            # Proxies that write the port they saw: the address alone counts.
            ported = {"X-Forwarded-For": "198.51.100.9:4711, [2001:DB8::7]:51234, 10.1.2.3:443"}
            await proxy.get("/api/who", headers=ported, params={"probe": "ported"})
            await proxy.get("/api/who", headers={"X-Forwarded-For": "203.0.113.5, 203.0.113.6:http"})
        async with client_at(gw, "127.0.0.78") as stranger:
            await stranger.get("/api/who", headers={"X-Forwarded-For": "203.0.113.9"}, params={"probe": "x"})
        assert chat.forwarded_for == [
            "198.51.100.7",
            "198.51.100.8",
            "127.0.0.77",
            "127.0.0.77",
            "2001:db8::7",
            "127.0.0.77",
            "127.0.0.78",
        ]
        await wait_for(lambda: "probe=x" in gw.log_text())
        log = gw.log_text()
        trusted_line = next(line for line in log.splitlines() if "probe=trusted" in line)
        assert "198.51.100.7 GET /api/who" in trusted_line
        ported_line = next(line for line in log.splitlines() if "probe=ported" in line)
        assert "2001:db8::7 GET /api/who" in ported_line
        stranger_line = next(line for line in log.splitlines() if "probe=x" in line)
        assert "127.0.0.78 GET /api/who" in stranger_line


async def test_without_trusted_proxies_x_forwarded_for_is_replaced(tmp_path: Path) -> None:
    async with stubs("chat") as (chat,), gateway(tmp_path, [chat]) as gw:
        async with client_at(gw, "127.0.0.79") as http:
            await http.get("/api/who", headers={"X-Forwarded-For": "203.0.113.5"})
        assert chat.forwarded_for == ["127.0.0.79"]
