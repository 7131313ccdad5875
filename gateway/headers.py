"""Security headers on every response of the gateway, its own and proxied ones alike; a header a service
already set is left as it is."""

from __future__ import annotations

from litestar.types import Message, Send

from fechatter_core.settings import SecurityHeaderSettings

DOCS_PREFIX = "/api/docs"


class SecurityHeaders:
    def __init__(self, settings: SecurityHeaderSettings, tls: bool) -> None:
        common = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", settings.referrer_policy.encode()),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if tls:
            common.append((b"strict-transport-security", f"max-age={settings.hsts_max_age_seconds}".encode()))
        self.app_headers = [*common, (b"content-security-policy", settings.content_security_policy.encode())]
        self.docs_headers = [
            *common,
            (b"content-security-policy", settings.docs_content_security_policy.encode()),
        ]

    def for_path(self, path: str) -> list[tuple[bytes, bytes]]:
        return self.docs_headers if path.startswith(DOCS_PREFIX) else self.app_headers


Headers = list[tuple[bytes, bytes]]


def with_headers(send: Send, defaults: Headers, rate_limit: Headers | tuple[()] = ()) -> Send:
    """``send`` adding the gateway's headers to the response head, in one pass: each of ``defaults`` that
    the response does not set already (security headers), and the ``rate_limit`` headers unless a service
    answered with its own limit (the chat API's sign-in limits are the ones that applied)."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {k.lower() for k, _ in headers}
            headers += [(k, v) for k, v in defaults if k not in present]
            if rate_limit and b"x-ratelimit-limit" not in present:
                headers += rate_limit
            message["headers"] = headers
        await send(message)

    return send_with_headers
