"""Streaming reverse proxy (raw ASGI, for speed): request bodies are forwarded, response bodies are
relayed chunk by chunk as they arrive, so Server-Sent Events flow through unbuffered."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import msgspec
from litestar.types import Receive, Scope, Send

from fechatter_core.errors import error_body
from gateway.routing import RoutingTable

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
RESPONSE_DROP = HOP_BY_HOP | {b"x-request-id", b"server", b"date"}

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


class Proxy:
    def __init__(self, table: RoutingTable, client: httpx.AsyncClient, max_body: int) -> None:
        self.table = table
        self.client = client
        self.max_body = max_body

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise OverflowError
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Proxy the request if a route matches; False lets the caller serve it (frontend, 404)."""
        upstream = self.table.resolve(scope["path"])
        if upstream is None:
            return False
        try:
            body = await self._read_body(receive)
        except OverflowError:
            await send_error(
                send, 413, "payload_too_large", f"The request body is larger than {self.max_body} bytes"
            )
            return True
        if body is None:
            return True
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
        url = upstream.pick() + scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        request = self.client.build_request(scope["method"], url, headers=headers, content=body)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            await send_error(send, 504, "gateway_timeout", f"{upstream.name} did not answer in time")
            return True
        except httpx.HTTPError as exc:
            log.warning("upstream %s unreachable: %s", upstream.name, type(exc).__name__)
            await send_error(send, 503, "unavailable", f"{upstream.name} is unavailable")
            return True
        await self._relay(response, receive, send)
        return True

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
