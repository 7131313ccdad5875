"""Security headers on every response of the gateway, its own and proxied ones alike; a header a service
already set is left as it is."""

from __future__ import annotations

from litestar.types import Message, Scope, Send

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

    def wrap_send(self, scope: Scope, send: Send) -> Send:
        extra = self.docs_headers if scope["path"].startswith(DOCS_PREFIX) else self.app_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                message["headers"] = headers
            await send(message)

        return send_with_headers
