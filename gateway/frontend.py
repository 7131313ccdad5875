"""Serves the built web client with single-page-app fallback; a plain page until it is built.

Vite names what it emits under ``assets/`` by content hash, so those may be cached for a year; ``index.html``
names the current hashes and must be revalidated on every load, or a browser keeps an old build.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from litestar import MediaType, Response, get
from litestar.response import File

from fechatter_core.errors import not_found

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fechatter</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; line-height: 1.5">
<h1>Fechatter is running</h1>
<p>The API is at <code>/api</code> (documentation at <a href="/api/docs">/api/docs</a>) and live events at
<code>/sse</code>. The web client has not been built on this machine yet: run <code>make frontend-build</code>
(needs Node.js) and reload.</p>
<p>Health of every service: <a href="/api/health/all">/api/health/all</a></p>
</body></html>"""


def frontend_handlers(dist_dir: str) -> list[Any]:
    root = Path(dist_dir).resolve()

    @get(["/", "/{path:path}"], include_in_schema=False)
    async def serve(path: str = "") -> Response[Any] | File:
        index = root / "index.html"
        if not index.exists():
            return Response(PLACEHOLDER, media_type=MediaType.HTML, headers={"Cache-Control": REVALIDATE})
        wanted = (root / path.lstrip("/")).resolve()
        if wanted.is_relative_to(root) and wanted.is_file():
            hashed = wanted.is_relative_to(root / "assets")
            return _file(wanted, IMMUTABLE if hashed else REVALIDATE)
        if path.startswith(("/api/", "/assets/", "api/", "assets/")) or "." in path.rsplit("/", 1)[-1]:
            raise not_found()
        return _file(index, REVALIDATE)

    return [serve]


def _file(path: Path, cache_control: str) -> File:
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return File(
        path,
        filename=path.name,
        media_type=media_type,
        content_disposition_type="inline",
        headers={"Cache-Control": cache_control},
    )
