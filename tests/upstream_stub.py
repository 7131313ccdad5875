"""A real HTTP/1.1 server for the gateway to proxy to, with answers a test controls.

The gateway tests that need to see the service's side (when the first bytes of a body arrive, which
instance a request reached, what X-Forwarded-For it carried, a /health that fails on demand) run a real
gateway process in front of these. Routes:

- ``GET /health``: ``health_status`` (200 by default) with a JSON body; hangs while ``health_hang`` is set.
- ``POST …/upload``: reads the body as it comes (Content-Length or chunked) without keeping it; answers
  ``{"received": n}``. ``body_started`` is set at the first byte, ``received`` counts them.
- ``GET …/download?size=N``: N bytes, sized; the first ``HOLD_BYTES`` at once and the rest only once
  ``release`` is set (when ``hold`` is in the query) or straight away.
- ``POST …/upload-then-die``: reads ``DIE_AFTER`` bytes of the body, then drops the connection unanswered
  (a service that crashed during an upload).
- ``GET …/status?code=N``: status N with an empty body.

While ``close_kept_connections`` is set, a request that comes on a connection which already served one is
not answered: the connection is closed (a service whose keep-alive timeout ran out as the request came).
- anything else: ``{"server": name, "path": ..., "headers": {...}}`` (for HEAD, only its head).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import parse_qs, urlsplit

HOLD_BYTES = 64 * 1024
DIE_AFTER = 256 * 1024
PIECE = 64 * 1024


class UpstreamStub:
    def __init__(self, name: str) -> None:
        self.name = name
        self.health_status = 200
        self.health_hang = False
        self.health_probes = 0
        self.hits: list[str] = []  # paths of the requests other than /health
        self.forwarded_for: list[str] = []
        # For each request other than /health, the number of the connection it came on (from 1).
        self.hit_connections: list[int] = []
        self.connections = 0
        self.received = 0
        self.body_started = asyncio.Event()
        self.release = asyncio.Event()
        self.uploads_completed = 0
        self.close_kept_connections = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        connection = self.connections
        served = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                if served and self.close_kept_connections and not target.startswith("/health"):
                    return
                served += 1
                keep = await self._answer(method, target, headers, reader, writer, connection)
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _body(self, headers: dict[str, str], reader: asyncio.StreamReader) -> int:
        """Reads the body piece by piece, counting and dropping it."""
        total = 0

        def got(n: int) -> None:
            nonlocal total
            total += n
            self.received += n
            if n:
                self.body_started.set()

        if "content-length" in headers:
            left = int(headers["content-length"])
            while left:
                piece = await reader.read(min(left, PIECE))
                if not piece:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(piece)
                got(len(piece))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                left = size
                while left:
                    piece = await reader.read(min(left, PIECE))
                    if not piece:
                        raise asyncio.IncompleteReadError(b"", left)
                    left -= len(piece)
                    got(len(piece))
                await reader.readexactly(2)
        return total

    async def _answer(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: int,
    ) -> bool:
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        route = parts.path.rsplit("/", 1)[-1]
        if parts.path == "/health":
            self.health_probes += 1
            while self.health_hang:
                await asyncio.sleep(0.05)
            body = json.dumps({"status": "ok" if self.health_status == 200 else "down", "checks": {}})
            _respond(writer, self.health_status, body.encode())
            return True
        self.hits.append(parts.path)
        self.hit_connections.append(connection)
        self.forwarded_for.append(headers.get("x-forwarded-for", ""))
        if route == "upload-then-die":
            await reader.readexactly(DIE_AFTER)
            self.received += DIE_AFTER
            writer.transport.abort()
            return False
        if route == "upload":
            total = await self._body(headers, reader)
            self.uploads_completed += 1
            _respond(writer, 200, json.dumps({"received": total}).encode())
            return True
        await self._body(headers, reader)
        if route == "download":
            size = int(query["size"][0])
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                b"content-length: %d\r\n\r\n" % size
            )
            first = min(size, HOLD_BYTES)
            writer.write(b"a" * first)
            await writer.drain()
            if "hold" in query:
                await self.release.wait()
            left = size - first
            piece = b"b" * PIECE
            while left:
                writer.write(piece[: min(left, PIECE)])
                left -= min(left, PIECE)
                await writer.drain()
            return True
        if route == "status":
            # An answer without a body, whatever its headers say (204, 304).
            writer.write(b"HTTP/1.1 %s X\r\ncontent-length: 0\r\n\r\n" % query["code"][0].encode())
            return True
        body = json.dumps({"server": self.name, "path": parts.path, "headers": headers}).encode()
        if method == "HEAD":
            # The head of the GET answer: its Content-Length, no body.
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
            )
            return True
        _respond(writer, 200, body)
        return True


def _respond(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    writer.write(
        b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (status, len(body), body)
    )
