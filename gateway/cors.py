"""CORS from an allow-list: preflights answered here, allowed origins echoed on every response."""

from __future__ import annotations

from litestar.types import Message, Scope, Send

ALLOW_METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = b"authorization, content-type, idempotency-key, last-event-id, x-request-id"
EXPOSE_HEADERS = b"x-request-id, retry-after, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset"


def _origin(scope: Scope) -> bytes | None:
    for key, value in scope["headers"]:
        if key == b"origin":
            return value
    return None


class Cors:
    def __init__(self, allow_origins: list[str]) -> None:
        self.allowed = {o.rstrip("/").encode() for o in allow_origins}

    def _allowed(self, origin: bytes | None) -> bool:
        return origin is not None and (origin in self.allowed or b"*" in self.allowed)

    async def preflight(self, scope: Scope, send: Send) -> bool:
        if scope["method"] != "OPTIONS":
            return False
        if not any(k == b"access-control-request-method" for k, _ in scope["headers"]):
            return False
        origin = _origin(scope)
        headers = [(b"vary", b"origin"), (b"content-length", b"0")]
        status = 403
        if self._allowed(origin):
            status = 204
            headers += [
                (b"access-control-allow-origin", origin or b""),
                (b"access-control-allow-methods", ALLOW_METHODS),
                (b"access-control-allow-headers", ALLOW_HEADERS),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-max-age", b"600"),
            ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return True

    def wrap_send(self, scope: Scope, send: Send) -> Send:
        origin = _origin(scope)
        if origin is None:
            return send
        if not self._allowed(origin):
            # No CORS headers: the browser refuses the response to that page. Caches still learn that
            # the answer depends on the origin.
            return _add_vary(send)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"access-control-allow-origin", origin or b""),
                    (b"access-control-allow-credentials", b"true"),
                    (b"access-control-expose-headers", EXPOSE_HEADERS),
                    (b"vary", b"origin"),
                ]
                message["headers"] = headers
            await send(message)

        return send_with_cors


def _add_vary(send: Send) -> Send:
    async def send_with_vary(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"vary", b"origin")]
        await send(message)

    return send_with_vary
