"""Uploads and downloads: the rules for files.

An upload streams into a temp blob (see upload.py), then: its type is detected from the content and checked
against the allow/deny lists; images get their size and a thumbnail (in a worker thread, with the pixel
count bounded); the blob is moved under its hash (stored once however often it is uploaded); and one
``files`` row plus its ``file.uploaded`` event are written in one transaction.

A file is readable by its uploader and by the members of any chat where a (not deleted) message carries
it; to everyone else it does not exist (404), so file ids reveal nothing.
"""

from __future__ import annotations

import asyncio
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from litestar import Request

from fechatter_core import events
from fechatter_core.db import sql
from fechatter_core.db.schema import files
from fechatter_core.errors import not_found, validation_error
from fechatter_core.outbox import record
from fechatter_core.security import AccessClaims
from fechatter_core.workspace_access import require_workspace_member
from fechatter_server.context import AppContext
from fechatter_server.files import images
from fechatter_server.files.queries import FILE_COLUMNS, readable_file
from fechatter_server.files.sniff import detect, type_allowed
from fechatter_server.files.storage import BlobStore
from fechatter_server.files.upload import FIELD, receive_file
from fechatter_server.views import FileOut, file_out, to_builtins

# Decoding images is CPU work; at most this many run at once, off the event loop.
_IMAGE_SLOTS = asyncio.Semaphore(2)


def store_of(ctx: AppContext) -> BlobStore:
    return BlobStore(ctx.settings.storage.path)


def clean_filename(raw: str, max_chars: int) -> str:
    """The name to keep: no directory part, no control or invisible formatting characters (which could
    disguise an extension), trimmed, and at most ``max_chars`` characters with the extension kept."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co"))
    name = name.strip().strip(".").strip()
    if not name:
        return "file"
    if len(name) > max_chars:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and len(ext) <= 16 and len(ext) + 1 < max_chars:
            name = stem[: max_chars - len(ext) - 1].rstrip() + "." + ext
        else:
            name = name[:max_chars]
    return name


@dataclass(frozen=True)
class _ImageFacts:
    width: int | None = None
    height: int | None = None
    thumbnail_sha256: str | None = None


async def upload(ctx: AppContext, caller: AccessClaims, request: Request[Any, Any, Any]) -> FileOut:
    conf = ctx.settings.files
    async with sql.connect(ctx.engine) as conn:
        await require_workspace_member(conn, caller)  # before a byte of the file is stored
    store = store_of(ctx)
    await asyncio.to_thread(store.ensure)
    received = await receive_file(
        request,
        store,
        max_bytes=ctx.settings.limits.upload_max_bytes,
        overhead=conf.multipart_overhead_bytes,
    )
    blob = received.blob
    try:
        sha256 = await asyncio.to_thread(blob.finish)
        filename = clean_filename(received.filename, conf.filename_max_chars)
        mime = detect(received.head, filename, complete=blob.size <= len(received.head))
        if not type_allowed(mime, conf.allowed_types, conf.denied_types):
            raise validation_error(f"Files of type {mime} are not accepted", FIELD)
        facts = await _image_facts(ctx, store, blob.path, sha256, mime)
        await asyncio.to_thread(store.commit, blob.path, sha256)
    finally:
        blob.discard()  # a no-op once committed (the temp file has been renamed)

    async with ctx.engine.begin() as conn:
        row = (
            await conn.execute(
                files.insert()
                .values(
                    workspace_id=caller.workspace_id,
                    uploader_id=caller.user_id,
                    sha256=sha256,
                    size=blob.size,
                    mime_type=mime,
                    filename=filename,
                    width=facts.width,
                    height=facts.height,
                    thumbnail_sha256=facts.thumbnail_sha256,
                )
                .returning(*FILE_COLUMNS)
            )
        ).one()
        out = file_out(row)
        await record(
            conn,
            events.new_event(
                events.FILE_UPLOADED,
                workspace_id=caller.workspace_id,
                actor_id=caller.user_id,
                data=to_builtins(out),
            ),
        )
    ctx.publisher.wake()
    return out


async def _image_facts(ctx: AppContext, store: BlobStore, path: Path, sha256: str, mime: str) -> _ImageFacts:
    if mime not in images.THUMBNAIL_TYPES:
        return _ImageFacts()
    # The same bytes uploaded before: their size and thumbnail are known already.
    async with ctx.engine.connect() as conn:
        known = (
            await conn.execute(
                sa.select(files.c.width, files.c.height, files.c.thumbnail_sha256)
                .where(files.c.sha256 == sha256, files.c.width.is_not(None))
                .limit(1)
            )
        ).one_or_none()
    if known is not None and (known.thumbnail_sha256 is None or store.exists(known.thumbnail_sha256)):
        return _ImageFacts(known.width, known.height, known.thumbnail_sha256)
    conf = ctx.settings.files
    async with _IMAGE_SLOTS:
        try:
            info = await asyncio.to_thread(
                images.probe, path, max_pixels=conf.max_image_pixels, thumbnail_px=conf.thumbnail_px
            )
        except images.ImageTooLarge as exc:
            raise validation_error(
                f"The image is too large ({exc} pixels; at most {conf.max_image_pixels} pixels)", FIELD
            ) from None
    if info is None:
        return _ImageFacts()
    thumb = await asyncio.to_thread(store.put_bytes, info.thumbnail) if info.thumbnail else None
    return _ImageFacts(info.width, info.height, thumb)


@dataclass(frozen=True)
class Download:
    path: Path
    mime_type: str
    etag: str
    disposition: str


def _disposition(kind: str, filename: str) -> str:
    """RFC 6266: an ASCII fallback for old clients, and the exact name as UTF-8 in filename*."""
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\%' else "_" for ch in filename)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _inline(mime: str) -> bool:
    # Raster images display in the page; everything else downloads (SVG can carry script).
    return mime.startswith("image/") and mime != "image/svg+xml"


async def download(ctx: AppContext, caller: AccessClaims, file_id: int, *, thumbnail: bool) -> Download:
    async with ctx.engine.connect() as conn:
        row = await readable_file(conn, caller, file_id)
    if row is None:
        raise not_found("File not found")
    store = store_of(ctx)
    if thumbnail:
        if row.thumbnail_sha256 is None:
            raise not_found("This file has no thumbnail")
        thumb_path = store.path_for(row.thumbnail_sha256)
        if not await asyncio.to_thread(thumb_path.is_file):
            raise not_found("The thumbnail is missing from storage")
        stem = row.filename.rsplit(".", 1)[0] if "." in row.filename else row.filename
        return Download(
            path=thumb_path,
            mime_type=images.THUMBNAIL_MIME,
            etag=row.thumbnail_sha256,
            disposition=_disposition("inline", f"{stem}-thumbnail.webp"),
        )
    path = store.path_for(row.sha256)
    if not await asyncio.to_thread(path.is_file):
        raise not_found("The file's content is missing from storage")
    kind = "inline" if _inline(row.mime_type) else "attachment"
    return Download(
        path=path, mime_type=row.mime_type, etag=row.sha256, disposition=_disposition(kind, row.filename)
    )
