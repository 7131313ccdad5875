"""Reading a multipart upload as it streams in: the file part goes to a temp file (and into its hash) in
writes of about 1 MiB made in a worker thread, so memory holds at most that much plus one network chunk and
the first bytes used to detect the type, whatever the size, and the event loop never waits on the disk.
The size limit is enforced on the bytes received, not on a declared length."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from litestar import Request
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from fechatter_core.errors import ApiError, bad_request, validation_error
from fechatter_server.files.sniff import SNIFF_BYTES
from fechatter_server.files.storage import BlobStore, PendingBlob

FIELD = "file"


@dataclass
class ReceivedFile:
    blob: PendingBlob
    filename: str
    head: bytes


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"The file is larger than {limit} bytes")


async def receive_file(
    request: Request[Any, Any, Any], store: BlobStore, *, max_bytes: int, overhead: int
) -> ReceivedFile:
    """The ``file`` part of a multipart body, written to a temp blob (the caller commits or discards it)."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != "multipart/form-data":
        raise ApiError(
            415, "unsupported_media_type", "Send the file as multipart/form-data in a field named 'file'"
        )
    boundary = options.get("boundary")
    if not boundary:
        raise bad_request("The multipart body has no boundary")

    body_limit = max_bytes + overhead
    received = 0
    blob: PendingBlob | None = None
    head = bytearray()
    filename: str | None = None
    in_file = False
    stream = request.stream()
    try:
        with PushMultipartParser(boundary, max_segment_count=32) as parser:
            async for chunk in stream:
                received += len(chunk)
                if received > body_limit:
                    raise too_large(max_bytes)
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        in_file = event.name == FIELD
                        if in_file:
                            if blob is not None:
                                raise validation_error("Send one file per upload", FIELD)
                            blob = store.begin()
                            filename = event.filename or ""
                    elif event is None:
                        in_file = False
                    elif in_file and blob is not None:
                        full = blob.add(event)
                        if blob.size > max_bytes:
                            raise too_large(max_bytes)
                        if len(head) < SNIFF_BYTES:
                            head += event[: SNIFF_BYTES - len(head)]
                        if full:
                            await asyncio.to_thread(blob.flush)
                if parser.closed:
                    break
    except MultipartError:
        if blob is not None:
            blob.discard()
        raise bad_request("The multipart body is malformed") from None
    except BaseException:
        if blob is not None:
            blob.discard()
        with contextlib.suppress(Exception):
            await _drain(stream, limit=body_limit * 4)
        raise
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()
    if blob is None:
        raise validation_error("A file is required in the multipart field 'file'", FIELD)
    if blob.size == 0:
        blob.discard()
        raise validation_error("The file is empty", FIELD)
    return ReceivedFile(blob=blob, filename=filename or "", head=bytes(head))


async def _drain(stream: Any, *, limit: int) -> None:
    """Read and drop what is left of a refused body (up to ``limit``), so the proxy in front can finish
    sending it and relay our answer instead of failing on a reset connection."""
    drained = 0
    async for chunk in stream:
        drained += len(chunk)
        if drained > limit:
            return
