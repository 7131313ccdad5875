"""Streaming reverse proxy (raw ASGI, for speed): request bodies are forwarded, response bodies are
relayed chunk by chunk as they arrive, so Server-Sent Events flow through unbuffered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx
import msgspec
from litestar.types import Receive, Scope, Send

from fechatter_core.errors import error_body
from gateway.routing import Route, RoutingTable

log = logging.getLogger(__name__)

HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"host",
    b"content-length",
}
# Set by the gateway itself: a client-supplied value must never reach a service (it would let a client
# pick the address that rate limits count).
REQUEST_DROP = HOP_BY_HOP | {
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-real-ip",
    b"x-request-id",
}
# The gateway's own request-id layer sets these on the way out.
# Content-Length is kept: the body is relayed byte for byte (never decoded), and a sized response spares
# the client chunked decoding.
RESPONSE_DROP = (HOP_BY_HOP - {b"content-length"}) | {b"x-request-id", b"server", b"date"}

_json = msgspec.json.Encoder().encode


async def send_error(
    send: Send, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] = ()
) -> None:
    body = _json(error_body(code, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# A body refused early is still read (and dropped) up to this much past the limit: a connection closed on
# unread bytes is reset, and the client would see the reset instead of the 413/429.
DRAIN_EXTRA = 1024 * 1024


async def drain(receive: Receive, budget: int) -> None:
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body"):
            return


class NoCookies(CookieJar):
    """The proxy's HTTP client must not keep cookies: a Set-Cookie from one client's response (the
    refresh token) would otherwise be sent upstream with the next client's requests."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def add_cookie_header(self, request: Any) -> None:
        return None


class UpstreamFailed(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# Sent again to the next replica after the request reached a server that failed before answering:
# only requests that are safe to repeat. (A refused connection means nothing was sent; that request
# goes to the next replica whatever its method.)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _retryable(method: str, headers: list[tuple[bytes, bytes]]) -> bool:
    # The chat API answers a repeated Idempotency-Key with the original result instead of acting twice.
    return method in SAFE_METHODS or any(k == b"idempotency-key" for k, _ in headers)


class Proxy:
    def __init__(
        self,
        table: RoutingTable,
        client: httpx.AsyncClient,
        *,
        first_byte_timeout: float,
    ) -> None:
        self.table = table
        self.client = client
        self.first_byte_timeout = first_byte_timeout

    async def read_body(self, scope: Scope, receive: Receive, limit: int) -> bytes | None:
        """The whole request body; ``OverflowError`` past ``limit`` (by Content-Length before reading
        anything, or counted as a chunked body arrives); None when the client went away."""
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await drain(receive, limit + DRAIN_EXTRA)
            raise OverflowError
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                if message.get("more_body"):
                    await drain(receive, limit + DRAIN_EXTRA - size)
                raise OverflowError
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        body_limit: int,
    ) -> None:
        try:
            body = await self.read_body(scope, receive, body_limit)
        except OverflowError:
            await send_error(
                send, 413, "payload_too_large", f"The request body is larger than {body_limit} bytes"
            )
            return
        if body is None:
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in REQUEST_DROP]
        client = scope.get("client")
        forwarded_for = client[0] if client else ""
        headers += [
            (b"x-forwarded-for", forwarded_for.encode()),
            (b"x-forwarded-proto", scope.get("scheme", "http").encode()),
            (b"x-request-id", scope["state"]["request_id"].encode()),
        ]
        host = dict(scope["headers"]).get(b"host")
        if host:
            headers.append((b"x-forwarded-host", host))
        target = scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        try:
            response = await self._send(scope["method"], target, headers, body, route)
        except UpstreamFailed as exc:
            await send_error(send, exc.status, exc.code, exc.message)
            return
        await self._relay(response, receive, send)

    async def _send(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes, route: Route
    ) -> httpx.Response:
        upstream = route.upstream
        # Stream routes (SSE) wait for the first byte, then never time out between chunks.
        timeout = self.client.timeout if not route.stream else self._stream_timeout()
        retryable = _retryable(method, headers)
        failure = UpstreamFailed(503, "unavailable", f"{upstream.name} is unavailable")
        for server in upstream.candidates():
            request = self.client.build_request(
                method, server + target, headers=headers, content=body, timeout=timeout
            )
            try:
                sending = self.client.send(request, stream=True)
                if route.stream:
                    response = await asyncio.wait_for(sending, self.first_byte_timeout)
                else:
                    response = await sending
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                log.warning(
                    "%s at %s unreachable (%s); trying the next", upstream.name, server, type(exc).__name__
                )
                upstream.mark_down(server)
                continue
            except (httpx.TimeoutException, TimeoutError):
                raise UpstreamFailed(
                    504, "gateway_timeout", f"{upstream.name} did not answer in time"
                ) from None
            except httpx.HTTPError as exc:
                log.warning("%s at %s failed before answering: %s", upstream.name, server, type(exc).__name__)
                failure = UpstreamFailed(502, "bad_gateway", f"{upstream.name} failed to answer")
                if not retryable:
                    raise failure from None
                continue
            upstream.mark_up(server)
            return response
        raise failure

    def _stream_timeout(self) -> httpx.Timeout:
        base = self.client.timeout
        return httpx.Timeout(connect=base.connect, read=None, write=base.write, pool=base.pool)

    async def _relay(self, response: httpx.Response, receive: Receive, send: Send) -> None:
        out_headers = [(k, v) for k, v in response.headers.raw if k.lower() not in RESPONSE_DROP]

        async def pump() -> None:
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": out_headers}
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        pump_task = asyncio.ensure_future(pump())
        gone_task = asyncio.ensure_future(client_gone())
        try:
            done, _ = await asyncio.wait({pump_task, gone_task}, return_when=asyncio.FIRST_COMPLETED)
            if pump_task in done:
                pump_task.result()
        except (httpx.HTTPError, OSError, RuntimeError) as exc:
            log.info("stream ended early: %s", type(exc).__name__)
        finally:
            for task in (pump_task, gone_task):
                task.cancel()
            for task in (pump_task, gone_task):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await response.aclose()
