"""What every service's HTTP layer shares: request ids, request metrics, the error envelope, health
and metrics routes. Routes stay thin; these pieces are written once here."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import socket
import time
import typing
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
import sqlalchemy.exc
from litestar import Litestar, MediaType, Request, Response, get
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Reference, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from fechatter_core.errors import ApiError, code_for_status, error_body
from fechatter_core.logs import info_line, request_id_var

log = logging.getLogger(__name__)
access_log = logging.getLogger("fechatter.access")

REQUESTS = Counter("http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency (until the response is complete)",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# A client may send any method token: the metrics name these and count the rest as OTHER, so that no
# client can grow the number of series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


# A route served beside the framework on the connection's own ASGI channels, given the headers every
# response carries (the request id) and returning the status it answered (for the metrics). For SSE
# streams: one process holds tens of thousands, idle for hours, and the framework's request object and
# channel wrappers were a fifth of each one's memory; the server's own channels also hand back futures,
# so a stream can wait on a blocked write and on the client's disconnect without a task for each.
DirectRoute = Callable[[Scope, Receive, Send, list[tuple[bytes, bytes]]], Awaitable[int]]


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | tuple[()] = (),
    field: str | None = None,
) -> None:
    """Answer in the error envelope on raw ASGI channels (the gateway, a direct route)."""
    body = msgspec.json.encode(error_body(code, message, field))
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
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_api_error(send: Send, exc: ApiError, headers: list[tuple[bytes, bytes]]) -> int:
    """``send_error`` for an ApiError, with its own headers; returns its status."""
    extra = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in exc.headers.items()]
    await send_error(send, exc.status_code, exc.code, exc.message, [*extra, *headers], exc.field)
    return exc.status_code


class RequestContext:
    """Outermost ASGI layer: a request id on every response (404s included) and per-route metrics."""

    def __init__(
        self,
        app: ASGIApp,
        service: str,
        *,
        access_log: bool = False,
        direct: dict[str, DirectRoute] | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.access_log = access_log
        self.direct = direct or {}
        # (method, route, status) -> the request counter and latency histogram of those labels: looking
        # them up by labels on every request cost more than counting.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID_OK.match(incoming) else os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        direct = self.direct.get(scope["path"])
        if direct is not None:
            scope["path_template"] = scope["path"]
            try:
                status = await direct(scope, receive, send, [(b"x-request-id", request_id.encode())])
            finally:
                self._record(scope, status, started)
                request_id_var.reset(token)
            return

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        body_read = False

        async def receive_tracked() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] == "http.disconnect" or (
                message["type"] == "http.request" and not message.get("more_body", False)
            ):
                body_read = True
            return message

        try:
            await self.app(scope, receive_tracked, send_with_id)
            if status == 413 and not body_read:
                # The body was refused unread. Read it to the end anyway, so a client (the gateway) still
                # writing it sees the 413 instead of a reset connection.
                await _drain(receive_tracked)
        finally:
            self._record(scope, status, started)
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("path_template") or "unmatched"
        method = scope["method"]
        elapsed = time.perf_counter() - started
        key = (method if method in _METHODS else "OTHER", route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                REQUESTS.labels(self.service, key[0], route, str(status)),
                LATENCY.labels(self.service, key[0], route),
            )
        series[0].inc()
        series[1].observe(elapsed)
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            query = scope.get("query_string", b"").decode("latin-1")
            target = scope["path"] + (f"?{query}" if query else "")
            client = scope.get("client") or ("-", 0)
            # The formatter redacts ?access_token= and other secrets before this reaches a file.
            info_line(access_log, f"{client[0]} {method} {target} {status} {elapsed * 1000:.1f}ms")


async def _drain(receive: Receive, limit: int = 64 * 1024 * 1024, seconds: float = 10.0) -> None:
    read = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while read <= limit:
                message = await receive()
                if message["type"] != "http.request":
                    return
                read += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _envelope(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(content=body, status_code=status, headers=headers, media_type=MediaType.JSON)


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return _envelope(exc.status_code, exc.body(), exc.headers)


def _validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    detail = str(first.get("message") or exc.detail or "Invalid request")
    key = first.get("key")
    if "malformed" in detail.lower() or "json is malformed" in str(exc.detail).lower():
        return _envelope(400, error_body("bad_request", "The request body is not valid JSON"))
    field = str(key) if key else None
    source = first.get("source")
    source = getattr(source, "value", source)  # Litestar passes a ParamType enum here
    if source in {"query", "path", "header"} and field:
        detail = f"Invalid {source} parameter {field!r}: {detail}"
    return _envelope(400, error_body("validation_error", _clean_msgspec(detail), field))


def _clean_msgspec(message: str) -> str:
    # msgspec says "Expected `str` of length >= 8 - at `$.password`"; the field travels separately.
    return re.sub(r"\s*- at `\$[^`]*`$", "", message).replace("`", "")


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        return _envelope(status, error_body(code_for_status(status), "The service failed to answer"))
    message = str(exc.detail) if exc.detail else "Request failed"
    if status == 404:
        message = "Not found"
    elif status == 400 and "json" in message.lower():
        message = "The request body is not valid JSON"
    headers = dict(exc.headers or {})
    return _envelope(status, error_body(code_for_status(status), message), headers)


# Failures of a dependency that is down or not answering (the database most of all), not of the request:
# a statement, connection or pool wait that timed out, a connection refused, lost or never made (an
# unknown host, a network that cannot reach it), a server starting up or out of connections.
_UNAVAILABLE = (
    TimeoutError,  # asyncio's too, and nats-py's
    ConnectionError,  # refused, reset, aborted, a broken pipe
    socket.gaierror,  # a host name that does not resolve (a stopped container's)
    sqlalchemy.exc.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.ClientCannotConnectError,
    asyncpg.exceptions.ConnectionRejectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout: the database could not answer in time
)
_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.ETIMEDOUT}
RETRY_UNAVAILABLE_AFTER = "5"


def dependency_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says a service this one needs is down or not answering."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, _UNAVAILABLE):
            return True
        if isinstance(current, OSError) and (
            current.errno in _UNREACHABLE or str(current).startswith("Multiple exceptions")
        ):
            return True  # no route to it (asyncio joins the failures of every address it tried)
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        # A pooled connection the server closed (it restarted) fails its next use with this.
        if isinstance(current, asyncpg.InterfaceError) and "connection is closed" in str(current):
            return True
        wrapped = getattr(current, "orig", None)  # SQLAlchemy keeps the driver's error here
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__ or current.__context__
        seen += 1
    return False


def _unhandled(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if dependency_unavailable(exc):
        # Expected while a dependency is down; one line each, not a traceback.
        log.warning("%s %s: a dependency is unavailable (%r)", request.method, request.url.path, exc)
        return _envelope(
            503,
            error_body("unavailable", "The service cannot answer right now; try again shortly"),
            {"Retry-After": RETRY_UNAVAILABLE_AFTER},
        )
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _envelope(500, error_body("internal_error", "Something went wrong on our side"))


# msgspec names the field either in the path ("... - at `$.seq`") or in the text ("... field `seq`").
_AT_FIELD = re.compile(r" - at `\$\.(?P<field>[^`.\[]+)[^`]*`$")
_NAMED_FIELD = re.compile(r"(?:missing required|contains unknown) field `(?P<field>[^`]+)`")

Authenticate = Callable[[Request[Any, Any, Any]], Any]


def strict_body(
    authenticate: Authenticate | None = None,
) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A ``before_request`` hook validating a JSON body against the handler's ``data`` type, with JSON's
    own types.

    Litestar converts bodies leniently (the string "3" becomes the integer 3, 3.0 becomes 3) and reports a
    missing or unknown field against ``data``; a client that sends the wrong type should hear about it,
    with the field named. The hook runs before dependencies, so when the handler takes an authenticated
    ``caller`` it calls ``authenticate`` first: a bad token answers 401 before a bad body answers 400.
    """

    async def hook(request: Request[Any, Any, Any]) -> None:
        handler = request.route_handler
        field = handler.parsed_data_field
        if field is None:
            return
        if authenticate is not None and "caller" in handler.parsed_fn_signature.parameters:
            authenticate(request)
        media_type = getattr(field.kwarg_definition, "media_type", None)
        if media_type is not None and media_type != "application/json":
            return  # multipart and form bodies are Litestar's to parse
        raw = await request.body()
        if not raw.strip():
            if field.is_optional:
                return
            raise ApiError(400, "bad_request", "The request body is empty; a JSON object is expected")
        if not _is_json(request.headers.get("content-type")):
            raise ApiError(
                415,
                "unsupported_media_type",
                "The request body must be JSON (Content-Type: application/json)",
            )
        try:
            # Syntax first: the typed decode stops at the first wrong field, so a truncated body
            # would otherwise be reported as a field error, and bad UTF-8 would escape as a 500.
            document = msgspec.json.decode(raw)
            if b"\\u0000" in raw and _has_nul(document):
                # PostgreSQL text cannot hold NUL, and no person types one: refuse it up front, for every
                # field of every route, instead of failing in the database.
                message = "Text must not contain the NUL character"
                raise ApiError(400, "validation_error", message, field=_nul_field(document))
            msgspec.json.decode(raw, type=field.annotation, strict=True)
        except UnicodeDecodeError:
            raise ApiError(400, "bad_request", "The request body is not valid UTF-8 JSON") from None
        except msgspec.ValidationError as exc:
            text = str(exc)
            found = _AT_FIELD.search(text) or _NAMED_FIELD.search(text)
            message = _AT_FIELD.sub("", text).replace("`", "")
            name = found.group("field") if found else None
            raise ApiError(400, "validation_error", message, field=name) from None
        except msgspec.DecodeError:
            raise ApiError(400, "bad_request", "The request body is not valid JSON") from None

    return hook


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _nul_field(document: Any) -> str | None:
    """The top-level field whose value holds a NUL character somewhere, if the body is an object."""
    if isinstance(document, dict):
        for key, value in document.items():
            if _has_nul(key) or _has_nul(value):
                return str(key)
    return None


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def document_closed_bodies(app: Litestar) -> None:
    """Mark request bodies that refuse unknown fields with ``additionalProperties: false`` in the app's
    OpenAPI document (Litestar leaves it out), so clients and fuzzers see the contract the server keeps."""
    closed: set[str] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            field = handler.parsed_data_field
            if field is None:
                continue
            for candidate in (field.annotation, *typing.get_args(field.annotation)):
                config = getattr(candidate, "__struct_config__", None)
                if config is not None and config.forbid_unknown_fields:
                    closed.add(candidate.__name__)
    components = app.openapi_schema.components.schemas or {}
    for name in closed:
        schema = components.get(name)
        if isinstance(schema, Schema):
            schema.additional_properties = False


_ERROR_STATUSES = {
    "400": "validation_error (a field is wrong, named in field) or bad_request (the body is not JSON)",
    "401": "unauthorized: no, bad or expired token (invalid_credentials on sign-in)",
    "403": "forbidden: authenticated but not allowed (not a member, wrong role)",
    "404": "not_found",
    "409": "conflict, email_taken or idempotency_conflict",
    "413": "payload_too_large: the body is over the configured limit",
    "415": "unsupported_media_type: a body that is not application/json",
    "429": "rate_limited, with Retry-After",
}


def document_errors(app: Litestar) -> None:
    """Give every operation of the app's OpenAPI document the error responses of API.md, each with the
    envelope's schema, replacing Litestar's own (which describes a body this API never sends)."""
    schema = app.openapi_schema
    components = schema.components
    if components.schemas is None:
        components.schemas = {}
    components.schemas["ErrorEnvelope"] = Schema(
        type=OpenAPIType.OBJECT,
        required=["success", "error"],
        properties={
            "success": Schema(type=OpenAPIType.BOOLEAN, const=False),
            "error": Schema(
                type=OpenAPIType.OBJECT,
                required=["code", "message"],
                properties={
                    "code": Schema(type=OpenAPIType.STRING, description="snake_case, for programs"),
                    "message": Schema(type=OpenAPIType.STRING, description="for a person"),
                    "field": Schema(type=OpenAPIType.STRING, description="the field at fault, when one is"),
                },
                additional_properties=False,
            ),
        },
        additional_properties=False,
    )
    content = {"application/json": OpenAPIMediaType(schema=Reference("#/components/schemas/ErrorEnvelope"))}
    for item in (schema.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            responses = operation.responses if operation.responses is not None else {}
            for status, description in _ERROR_STATUSES.items():
                responses[status] = OpenAPIResponse(description=description, content=content)
            operation.responses = responses


BINARY_RESPONSE = "binary_response"  # route ``opt`` key: the route answers a file's bytes, not JSON


def document_binary_responses(app: Litestar) -> None:
    """Describe the success of routes marked ``opt={BINARY_RESPONSE: True}`` as bytes of any media type
    (a download carries the file's own type), with the 304 an ETag match gets."""
    paths = app.openapi_schema.paths or {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if not handler.opt.get(BINARY_RESPONSE):
                continue
            item = paths.get(route.path_format)
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None) if item is not None else None
                if operation is None:
                    continue
                responses = operation.responses if operation.responses is not None else {}
                ok = responses.get("200")
                description = ok.description if isinstance(ok, OpenAPIResponse) else "The bytes"
                binary = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
                responses["200"] = OpenAPIResponse(
                    description=description, content={"*/*": OpenAPIMediaType(schema=binary)}
                )
                responses["304"] = OpenAPIResponse(
                    description="Not modified (the If-None-Match ETag matched)"
                )
                operation.responses = responses


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: _api_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _unhandled,
}


Check = Callable[[], Awaitable[Any]]


def _quietly_discard(tasks: set[asyncio.Future[Any]]) -> Callable[[asyncio.Future[Any]], None]:
    def done(task: asyncio.Future[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its failure was reported as the check's timeout

    return done


# Each dependency check of /health: within the gateway's 2 s for a service's whole answer
# (gateway/health.py), so that a database that hangs shows as that check down, not the service unreachable.
CHECK_SECONDS = 1.5


class HealthChecks:
    """Named dependency checks. A failing *critical* check makes the service "down" (503), any other
    failing check makes it "degraded" (200): it still serves what it can."""

    def __init__(self, service: str, version: str = "0.1.0") -> None:
        self.service = service
        self.version = version
        self.started = time.monotonic()
        self._checks: dict[str, tuple[Check, bool]] = {}
        self._abandoned: set[asyncio.Future[Any]] = set()  # checks that ran out of time, still cleaning up

    def add(self, name: str, check: Check, *, critical: bool = True) -> None:
        self._checks[name] = (check, critical)

    async def _run(self, name: str, check: Check) -> dict[str, Any]:
        started = time.perf_counter()
        task = asyncio.ensure_future(check())
        # Not wait_for: it would also wait for the check to clean up once cancelled (a database connection
        # that does not answer takes seconds to let go of), and /health must answer in time.
        done, _ = await asyncio.wait({task}, timeout=CHECK_SECONDS)
        error: BaseException | None = None
        if not done:
            task.cancel()
            self._abandoned.add(task)
            task.add_done_callback(_quietly_discard(self._abandoned))
            error = TimeoutError()
        elif task.exception() is not None:
            error = task.exception()
        if error is not None:
            return {
                "status": "down",
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                "error": type(error).__name__ if not str(error) else str(error)[:200],
            }
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    async def report(self) -> tuple[int, dict[str, Any]]:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(n, self._checks[n][0]) for n in names))
        checks = dict(zip(names, results, strict=True))
        down = [n for n in names if checks[n]["status"] != "ok"]
        if any(self._checks[n][1] for n in down):
            status = "down"
        elif down:
            status = "degraded"
        else:
            status = "ok"
        body = {
            "status": status,
            "service": self.service,
            "version": self.version,
            "uptime_seconds": round(time.monotonic() - self.started, 1),
            "checks": checks,
        }
        return (503 if status == "down" else 200), body

    def route_handlers(self) -> list[Any]:
        @get(["/health", "/api/health"], include_in_schema=False)
        async def health() -> Response[Any]:
            status, body = await self.report()
            return Response(content=body, status_code=status, media_type=MediaType.JSON)

        @get("/metrics", include_in_schema=False)
        async def metrics() -> Response[bytes]:
            return Response(content=generate_latest(), media_type=CONTENT_TYPE_LATEST)

        return [health, metrics]


def wrap(
    app: ASGIApp, service: str, *, access_log: bool = False, direct: dict[str, DirectRoute] | None = None
) -> ASGIApp:
    return RequestContext(app, service, access_log=access_log, direct=direct)
