from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, Response, Router, get, post
from litestar.datastructures import ETag
from litestar.di import Provide
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import Parameter
from litestar.response import File
from litestar.status_codes import HTTP_201_CREATED, HTTP_304_NOT_MODIFIED

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_core.web import BINARY_RESPONSE
from fechatter_server.context import AppContext
from fechatter_server.deps import provide_viewer
from fechatter_server.files import service
from fechatter_server.views import FileOut

FileId = Annotated[int, Parameter(ge=1, le=2**62, description="File id")]
QueryToken = Annotated[
    str | None,
    Parameter(
        query="access_token",
        description="The access token, for browsers loading the file by URL (<img src>); else the header",
    ),
]


@dataclass
class _MultipartUpload(Operation):
    """Litestar documents no body for a handler that streams its request itself; this names the field."""

    def __post_init__(self) -> None:
        file_field = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, description="The file")
        self.request_body = RequestBody(
            required=True,
            content={
                "multipart/form-data": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.OBJECT, properties={"file": file_field}, required=["file"])
                )
            },
        )


@post(
    "/files",
    status_code=HTTP_201_CREATED,
    request_max_body_size=None,  # the upload limit is enforced while the body streams in
    operation_class=_MultipartUpload,
    summary="Upload a file (multipart/form-data, field 'file')",
    description=(
        "Answers {id, filename, size, mime_type, url}, plus width, height and thumbnail_url for images. "
        "The type is detected from the content, not taken from the client, and must be allowed by the "
        "server's type rules (400 validation_error, field file). Larger than the upload limit (10 MiB by "
        "default): 413 payload_too_large. Empty file or no 'file' field: 400 validation_error. A body that "
        "is not multipart/form-data: 415. The filename is kept without any directory part or control "
        "characters. Equal content is stored once; each upload gets its own id."
    ),
)
async def upload_file(
    ctx: AppContext, caller: AccessClaims, request: Request[Any, Any, Any]
) -> Response[Success[FileOut]]:
    return Response(ok(await service.upload(ctx, caller, request)), status_code=HTTP_201_CREATED)


def _serve(request: Request[Any, Any, Any], found: service.Download) -> Response[Any]:
    headers = {
        "content-disposition": found.disposition,
        "x-content-type-options": "nosniff",
        "cache-control": "private, max-age=300",
        "content-security-policy": "sandbox",
    }
    etag = ETag(value=found.etag)
    if _matches(request.headers.get("if-none-match"), found.etag):
        headers["etag"] = etag.to_header()
        return Response(content=b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
    return File(path=found.path, media_type=found.mime_type, etag=etag, headers=headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip().removeprefix("W/").strip('"')
        if tag in ("*", etag):
            return True
    return False


_DOWNLOAD_RULES = (
    "Only for the uploader and the members of a chat where a message carries the file; anyone else gets "
    "404, as for an id that does not exist. Sent with X-Content-Type-Options: nosniff, Cache-Control: "
    "private and an ETag (If-None-Match answers 304). Authenticate with the Authorization header or "
    "?access_token= (for <img src>)."
)


@get(
    "/files/{file_id:int}",
    summary="Download a file's bytes",
    description="Images are sent inline, anything else as an attachment. " + _DOWNLOAD_RULES,
    dependencies={"caller": Provide(provide_viewer, sync_to_thread=False)},
    response_description="The file's bytes with their content type",
    opt={BINARY_RESPONSE: True},
)
async def download_file(
    ctx: AppContext,
    caller: AccessClaims,
    request: Request[Any, Any, Any],
    file_id: FileId,
    access_token: QueryToken = None,
) -> Response[Any]:
    return _serve(request, await service.download(ctx, caller, file_id, thumbnail=False))


@get(
    "/files/{file_id:int}/thumbnail",
    summary="An image's thumbnail (WebP, at most 320 px on its longer side)",
    description="404 when the file has no thumbnail (not an image Pillow could read). " + _DOWNLOAD_RULES,
    dependencies={"caller": Provide(provide_viewer, sync_to_thread=False)},
    response_description="The thumbnail as image/webp",
    opt={BINARY_RESPONSE: True},
)
async def download_thumbnail(
    ctx: AppContext,
    caller: AccessClaims,
    request: Request[Any, Any, Any],
    file_id: FileId,
    access_token: QueryToken = None,
) -> Response[Any]:
    return _serve(request, await service.download(ctx, caller, file_id, thumbnail=True))


router = Router(path="/api", route_handlers=[upload_file, download_file, download_thumbnail], tags=["files"])
