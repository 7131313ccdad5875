"""A small keep-alive HTTP/1.1 client on raw asyncio streams for the load generators.

A general client (httpx) spends milliseconds of CPU per request in Python; at a few thousand requests per
second the benchmark would measure itself. This one writes a prepared request and reads the status line,
the headers and a ``Content-Length`` or chunked body, nothing more: enough for the platform's own answers.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class RawConnection:
    """One persistent connection; requests on it are sequential (one worker each)."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"expected http://host:port, got {base_url!r}")
        self.host, self.port = parts.hostname, parts.port
        fixed = {"Host": parts.netloc, **(headers or {})}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = ""
    ) -> tuple[int, bytes]:
        """Status and body. Reconnects once when the server had closed an idle connection."""
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._fixed
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body)}\r\n".encode()
            if content_type:
                head += f"Content-Type: {content_type}\r\n".encode()
        message = head + b"\r\n" + body
        for attempt in (1, 2):
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            try:
                self._writer.write(message)
                return await self._read_response()
            except (asyncio.IncompleteReadError, ConnectionError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _read_response(self) -> tuple[int, bytes]:
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, closing = 0, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.strip().lower() == b"close":
                closing = True
        if chunked:
            parts = []
            while size := int((await self._reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16):
                parts.append((await self._reader.readexactly(size + 2))[:-2])
            await self._reader.readuntil(b"\r\n")
            body = b"".join(parts)
        else:
            body = await self._reader.readexactly(length)
        if closing:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._reader = None
