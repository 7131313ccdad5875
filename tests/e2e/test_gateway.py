"""The gateway as a client meets it: CORS, rate limits per address, user and route tier, body limits,
security headers, upstream failures in the envelope, unbuffered SSE, the access log, metrics, TLS.

This module runs its own stack with small limits (the session stack has them off). Each test talks from
its own loopback address (127.0.0.x), so the per-address counters of one test do not touch another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import User, create_chat, invite, unique_email
from tests.sse import SseReader
from tests.stackutil import (
    REPO_ROOT,
    RunningStack,
    config_dir_with,
    free_ports,
    make_stack,
    stop_process_group,
)

pytestmark = pytest.mark.e2e

LIMITS = """rate_limits:
  enabled: true
  per_ip: { limit: 20, window_seconds: 60 }
  auth: { limit: 3, window_seconds: 60 }
  send: { limit: 3, window_seconds: 60 }
  upload: { limit: 2, window_seconds: 60 }
  read: { limit: 8, window_seconds: 60 }
body_limits:
  default_bytes: 4096
  upload_bytes: 65536
"""

_addresses = itertools.count(2)
# A proxy in front of the gateway (tests/e2e/test_gateway_upstreams.py covers the header handling itself).
TRUSTED_PROXY = "127.0.0.250"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    base = tmp_path_factory.mktemp("gateway")
    text = (REPO_ROOT / "fixtures" / "gateway.yml").read_text()
    section = text[text.index("rate_limits:") : text.index("tls:")]
    config = config_dir_with(base / "config", "gateway", {section: LIMITS})
    running = make_stack(
        base / "data",
        FECHATTER_CONFIG_DIR=str(config),
        GATEWAY_RATE_LIMITS="true",
        GATEWAY_UPSTREAM_TIMEOUT="5",
        GATEWAY_TRUSTED_PROXIES=TRUSTED_PROXY,
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


@contextlib.asynccontextmanager
async def client_from(stack: RunningStack, address: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests come from a loopback address of its own."""
    source = address or f"127.0.0.{next(_addresses)}"
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=stack.url, timeout=15, transport=transport) as http:
        yield http


async def new_user(http: httpx.AsyncClient, **fields: Any) -> User:
    body = {"email": unique_email("gw"), "password": "correct horse 1", "fullname": "Gate Keeper", **fields}
    response = await http.post("/api/signup", json=body)
    assert response.status_code == 201, response.text
    return User(response.json()["data"])


def assert_limited(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {
        "success": False,
        "error": {"code": "rate_limited", "message": response.json()["error"]["message"]},
    }
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == "0"
    retry = int(response.headers["retry-after"])
    assert 0 < retry <= 60
    assert int(response.headers["x-ratelimit-reset"]) == retry


# -- CORS --------------------------------------------------------------------------------------------


async def test_cors_answers_allowed_origins_and_ignores_others(gw: RunningStack) -> None:
    allowed, refused = "http://localhost:5173", "https://evil.example"
    async with client_from(gw) as http:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        ok = await http.options("/api/signin", headers={"Origin": allowed, **preflight})
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == allowed
        assert ok.headers["access-control-allow-credentials"] == "true"
        assert "POST" in ok.headers["access-control-allow-methods"]
        assert "content-type" in ok.headers["access-control-allow-headers"]
        assert "origin" in ok.headers["vary"].lower()

        no = await http.options("/api/signin", headers={"Origin": refused, **preflight})
        assert no.status_code == 403
        assert "access-control-allow-origin" not in no.headers

        user = await new_user(http)
        got = await http.get("/api/users", headers={"Origin": allowed, **user.auth})
        assert got.status_code == 200
        assert got.headers["access-control-allow-origin"] == allowed
        assert got.headers["access-control-allow-credentials"] == "true"
        assert "x-ratelimit-remaining" in got.headers["access-control-expose-headers"]
        assert "origin" in got.headers["vary"].lower()

        other = await http.get("/api/users", headers={"Origin": refused, **user.auth})
        assert other.status_code == 200  # the browser, not the server, withholds it from the page
        assert not any(k.startswith("access-control-") for k in other.headers)
        assert "origin" in other.headers["vary"].lower()


# -- rate limits -------------------------------------------------------------------------------------


async def test_sign_in_tier_is_strict_per_address(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        body = {"email": "nobody@example.test", "password": "wrong password 1"}
        remaining = []
        for _ in range(3):
            response = await http.post("/api/signin", json=body)
            assert response.status_code == 401, response.text
            assert response.headers["x-ratelimit-limit"] == "3"
            remaining.append(int(response.headers["x-ratelimit-remaining"]))
        assert remaining == [2, 1, 0]
        assert_limited(await http.post("/api/signin", json=body), 3)
        # Sign-up and refresh share the tier.
        assert_limited(await http.post("/api/signup", json={}), 3)
        assert_limited(await http.post("/api/refresh", json={"refresh_token": "x"}), 3)
    # Another address is not affected.
    async with client_from(gw) as http:
        response = await http.post("/api/signin", json=body)
        assert response.status_code == 401
        assert response.headers["x-ratelimit-remaining"] == "2"


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_counters(gw: RunningStack) -> None:
    # (Each part with an email of its own: the chat API also limits failed sign-ins per account.)
    body = {"email": unique_email("proxied"), "password": "wrong password 1"}
    async with client_from(gw, TRUSTED_PROXY) as proxy:
        first = {"X-Forwarded-For": "198.51.100.20"}
        for remaining in (2, 1, 0):
            response = await proxy.post("/api/signin", json=body, headers=first)
            assert response.status_code == 401, response.text
            assert response.headers["x-ratelimit-remaining"] == str(remaining)
        assert_limited(await proxy.post("/api/signin", json=body, headers=first), 3)
        # Another client behind the same proxy is counted apart.
        other = await proxy.post("/api/signin", json=body, headers={"X-Forwarded-For": "198.51.100.21"})
        assert other.status_code == 401
        assert other.headers["x-ratelimit-remaining"] == "2"
    body = {"email": unique_email("direct"), "password": "wrong password 1"}
    async with client_from(gw) as direct:
        # From an address that is not a trusted proxy the header changes nothing: one counter.
        for n in range(3):
            response = await direct.post(
                "/api/signin", json=body, headers={"X-Forwarded-For": f"198.51.100.{30 + n}"}
            )
            assert response.status_code == 401
        assert_limited(
            await direct.post("/api/signin", json=body, headers={"X-Forwarded-For": "198.51.100.40"}), 3
        )


async def test_sends_are_limited_per_user_and_chat(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        owner = await new_user(http, workspace_name="Limits")
        member = await new_user(http, invite_code=await invite(http, owner))
        first = await create_chat(http, owner, [member], name="first")
        second = await create_chat(http, owner, [member], name="second")
        url = f"/api/chat/{first['id']}/messages"
        for n in range(3):
            response = await http.post(url, headers=owner.auth, json={"content": f"m{n}"})
            assert response.status_code == 201, response.text
            assert response.headers["x-ratelimit-limit"] == "3"
            assert response.headers["x-ratelimit-remaining"] == str(2 - n)
        limited = await http.post(url, headers=owner.auth, json={"content": "one too many"})
        assert_limited(limited, 3)
        # The refused send changed nothing.
        page = await http.get(url, headers=owner.auth)
        assert [m["content"] for m in page.json()["data"]] == ["m0", "m1", "m2"]
    async with client_from(gw) as http:
        # Another chat, and another sender in the same chat, have their own counters.
        other_chat = await http.post(
            f"/api/chat/{second['id']}/messages", headers=owner.auth, json={"content": "elsewhere"}
        )
        assert other_chat.status_code == 201, other_chat.text
        other_sender = await http.post(url, headers=member.auth, json={"content": "me too"})
        assert other_sender.status_code == 201, other_sender.text


async def test_reads_are_limited_per_user(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        user = await new_user(http)
        other = await new_user(http)
    async with client_from(gw) as http:
        for n in range(8):
            response = await http.get("/api/users", headers=user.auth)
            assert response.status_code == 200, response.text
            assert response.headers["x-ratelimit-limit"] == "8"
            assert response.headers["x-ratelimit-remaining"] == str(7 - n)
        assert_limited(await http.get("/api/workspaces", headers=user.auth), 8)
        # The same user's token from another address is the same user.
    async with client_from(gw) as http:
        assert_limited(await http.get("/api/users", headers=user.auth), 8)
        response = await http.get("/api/users", headers=other.auth)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-remaining"] == "7"


async def test_a_forged_token_is_counted_by_address_not_as_its_user(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        user = await new_user(http)
    forged = user.token[:-4] + ("AAAA" if not user.token.endswith("AAAA") else "BBBB")
    async with client_from(gw) as http:
        for _ in range(8):
            response = await http.get("/api/users", headers={"Authorization": f"Bearer {forged}"})
            assert response.status_code == 401
        assert_limited(await http.get("/api/users", headers={"Authorization": f"Bearer {forged}"}), 8)
    async with client_from(gw) as http:
        # Those attempts did not use up the real user's reads.
        response = await http.get("/api/users", headers=user.auth)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-remaining"] == "7"


async def test_uploads_have_their_own_tier_and_body_limit(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        user = await new_user(http)
        files = {"file": ("a.bin", os.urandom(20_000), "application/octet-stream")}
        # 20 kB is over the JSON limit (4096) but within the upload limit: it reaches the chat API.
        for n in range(2):
            response = await http.post("/api/files", headers=user.auth, files=files)
            assert response.status_code != 413, response.text
            assert response.headers["x-ratelimit-limit"] == "2"
            assert response.headers["x-ratelimit-remaining"] == str(1 - n)
        assert_limited(await http.post("/api/files", headers=user.auth, files=files), 2)
    async with client_from(gw) as http:
        other = await new_user(http)
        big = {"file": ("b.bin", os.urandom(70_000), "application/octet-stream")}
        response = await http.post("/api/files", headers=other.auth, files=big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"


async def test_every_request_counts_per_address(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        users = [await new_user(http) for _ in range(3)]
    async with client_from(gw) as http:
        statuses = []
        for user in users:
            for _ in range(8 if user is not users[-1] else 4):
                statuses.append((await http.get("/api/users", headers=user.auth)).status_code)
        assert statuses == [200] * 20
        # The third user still has reads left, but this address has used its 20.
        assert_limited(await http.get("/api/users", headers=users[-1].auth), 20)


async def test_limits_pass_requests_while_redis_is_down(gw: RunningStack) -> None:
    redis_pid = gw.state()["children"]["redis"]["pid"]
    async with client_from(gw) as http:
        user = await new_user(http)
        os.killpg(redis_pid, signal.SIGSTOP)
        try:
            statuses, limited_headers = [], []
            for _ in range(12):  # more than the read limit of 8
                response = await http.get("/api/users", headers=user.auth)
                statuses.append(response.status_code)
                limited_headers.append("x-ratelimit-limit" in response.headers)
            assert statuses == [200] * 12
            assert not any(limited_headers)
            async with httpx.AsyncClient(timeout=10) as direct:
                health = await direct.get(f"http://127.0.0.1:{gw.port('GATEWAY_PORT')}/health")
            assert health.status_code == 200
            assert health.json()["status"] == "degraded"
            assert health.json()["checks"]["redis"]["status"] == "down"
            everything = (await http.get("/api/health/all")).json()
            assert everything["services"]["gateway"]["status"] == "degraded"
            assert everything["status"] in ("degraded", "down")
        finally:
            os.killpg(redis_pid, signal.SIGCONT)
        # Counting resumes a few seconds after Redis is back.
        for _ in range(10):
            await asyncio.sleep(1)
            response = await http.get("/api/users", headers=user.auth)
            if "x-ratelimit-limit" in response.headers:
                break
        # (What the stopped Redis had queued from the timed-out attempts may count too.)
        assert int(response.headers["x-ratelimit-remaining"]) <= 7
    log = (gw.data_dir / "logs" / "gateway.log").read_text()
    assert log.count("rate limits not checked, Redis unreachable") == 1


# -- body limits -------------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_refused_before_the_service(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        owner = await new_user(http, workspace_name="Bodies")
        chat = await create_chat(http, owner, [])
        url = f"/api/chat/{chat['id']}/messages"
        big = '{"content": "' + "x" * 5000 + '"}'
        headers = {**owner.auth, "content-type": "application/json"}
        declared = await http.post(url, headers=headers, content=big)
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "payload_too_large"

        async def chunks() -> AsyncIterator[bytes]:
            for piece in (big[i : i + 1000] for i in range(0, len(big), 1000)):
                yield piece.encode()

        chunked = await http.post(url, headers=headers, content=chunks())
        assert chunked.status_code == 413
        assert chunked.json()["error"]["code"] == "payload_too_large"
        page = await http.get(url, headers=owner.auth)
        assert page.json()["data"] == []


# -- upstream failures -------------------------------------------------------------------------------


async def test_a_service_that_is_down_or_hangs_gets_a_clear_answer(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        pid = gw.state()["children"]["bot_server"]["pid"]
        # The process group: Granian's workers are children of the recorded process.
        os.killpg(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            hung = await http.get("/api/bot/health")
            waited = time.monotonic() - started
        finally:
            os.killpg(pid, signal.SIGCONT)
        assert hung.status_code == 504, hung.text
        assert hung.json()["error"]["code"] == "gateway_timeout"
        assert 4.5 < waited < 15

        os.killpg(pid, signal.SIGKILL)
        await asyncio.sleep(0.1)
        down = await http.get("/api/bot/health")
        assert down.status_code == 503, down.text
        assert down.json() == {
            "success": False,
            "error": {"code": "unavailable", "message": "bot_server is unavailable"},
        }
        assert "x-request-id" in down.headers
        # The supervisor restarts it and the gateway reaches it again (the bot has no such route: its 404).
        bot = f"http://127.0.0.1:{gw.port('BOT_PORT')}/health"
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=5) as direct:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await direct.get(bot)).status_code == 200:
                        break
                await asyncio.sleep(0.3)
        back = await http.get("/api/bot/health")
        assert back.status_code == 404, back.text
        assert back.json()["error"]["code"] == "not_found"


# -- SSE, headers, log, metrics ----------------------------------------------------------------------


async def test_sse_through_the_gateway_is_not_buffered(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        owner = await new_user(http, workspace_name="Live")
        chat = await create_chat(http, owner, [])
        sse = httpx.AsyncClient(base_url=gw.url, timeout=httpx.Timeout(10, read=30))
        try:
            request = sse.build_request("GET", "/sse", headers=owner.auth)
            response = await sse.send(request, stream=True)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = SseReader(response)
            sent_at = time.monotonic()
            sent = await http.post(
                f"/api/chat/{chat['id']}/messages", headers=owner.auth, json={"content": "now"}
            )
            assert sent.status_code == 201
            _, data = await reader.next("new_message", timeout=5)
            assert data["content"] == "now"
            assert time.monotonic() - sent_at < 1.0
            await reader.close()
        finally:
            await sse.aclose()


async def test_security_headers_on_every_response(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        user = await new_user(http)
        responses = {
            "proxied": await http.get("/api/users", headers=user.auth),
            "401": await http.get("/api/users"),
            "own": await http.get("/health"),
            "web": await http.get("/"),
            "413": await http.post("/api/signin", content=b"x" * 5000),
        }
        for name, response in responses.items():
            headers = response.headers
            assert headers["x-content-type-options"] == "nosniff", name
            assert headers["x-frame-options"] == "DENY", name
            assert headers["referrer-policy"] == "strict-origin-when-cross-origin", name
            csp = headers["content-security-policy"]
            for directive in (
                "default-src 'self'",
                "img-src 'self' data: blob:",
                "connect-src 'self'",
                "style-src 'self' 'unsafe-inline'",
                "frame-ancestors 'none'",
            ):
                assert directive in csp, (name, csp)
            assert "strict-transport-security" not in headers, name  # plain HTTP here
        docs = await http.get("/api/docs")
        assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]
        assert docs.headers["x-frame-options"] == "DENY"


async def test_the_access_log_redacts_a_token_in_the_query(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        user = await new_user(http)
        response = await http.get("/api/users", params={"access_token": user.token, "probe": "redaction"})
        assert response.status_code in (200, 401)
    log_path = gw.data_dir / "logs" / "gateway.log"
    for _ in range(20):
        lines = [line for line in log_path.read_text().splitlines() if "probe=redaction" in line]
        if lines:
            break
        await asyncio.sleep(0.1)
    assert lines, "the request is not in the access log"
    assert "access_token=[redacted]" in lines[0]
    assert user.token not in log_path.read_text()
    assert user.token.split(".")[2] not in log_path.read_text()


async def test_metrics_label_routes_by_template(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        owner = await new_user(http, workspace_name="Metrics")
        chat = await create_chat(http, owner, [])
        await http.get(f"/api/chat/{chat['id']}/messages", headers=owner.auth)
        text = (await http.get("/metrics")).text
    assert 'route="/api/chat/{id}/messages"' in text
    assert f'route="/api/chat/{chat["id"]}/messages"' not in text
    assert "http_request_duration_seconds_bucket" in text


async def test_metrics_count_unknown_methods_as_other(gw: RunningStack) -> None:
    """A client may send any method token; each one must not become a series of its own."""
    async with client_from(gw) as http:
        for method in ("BREW", "WHEN"):
            response = await http.request(method, "/api/users/me")
            assert response.status_code < 500
        text = (await http.get("/metrics")).text
    assert 'method="OTHER"' in text
    assert 'method="BREW"' not in text and 'method="WHEN"' not in text


async def test_gateway_answers_its_own_health_on_both_paths(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        for path in ("/health", "/api/health"):
            response = await http.get(path)
            assert response.status_code == 200
            assert response.json()["service"] == "gateway"


# -- TLS ---------------------------------------------------------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_the_gateway_serves_https_with_a_configured_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port, dead = free_ports(2)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FECHATTER_", "GATEWAY_"))},
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "JWT_SECRET": "tls-test-secret-0123456789abcdef",
        "GATEWAY_TLS_CERT": str(cert),
        "GATEWAY_TLS_KEY": str(key),
        "GATEWAY_RATE_LIMITS": "false",
        "FECHATTER_UPSTREAM": f"http://127.0.0.1:{dead}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{port}",
            verify=ssl.create_default_context(cafile=str(cert)),
            timeout=5,
        ) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    health = await http.get("/health")
                    break
                except httpx.ConnectError:
                    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
            assert health.status_code == 200
            assert health.json()["service"] == "gateway"
            assert health.headers["strict-transport-security"].startswith("max-age=")
            down = await http.get("/api/users")
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "unavailable"
        async with httpx.AsyncClient(timeout=5) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{port}/health")
    finally:
        stop_process_group(proc)


async def test_the_gateway_never_carries_one_clients_cookies_to_another(gw: RunningStack) -> None:
    async with client_from(gw) as http:
        user = await new_user(http)
        assert "refresh_token" in http.cookies  # the chat API set its cookie on this client
        assert user.refresh_token
    async with client_from(gw) as stranger:
        assert not stranger.cookies
        response = await stranger.post("/api/refresh")
        assert response.status_code == 401, response.text
        assert "refresh_token" not in response.cookies
