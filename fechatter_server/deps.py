"""Dependencies injected into route handlers: the app context and the authenticated caller."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State

from fechatter_core.errors import unauthorized
from fechatter_core.security import AccessClaims, TokenError, bearer_token
from fechatter_server.context import AppContext


def provide_ctx(state: State) -> AppContext:
    return state.ctx


def provide_caller(request: Request[Any, Any, Any], state: State) -> AccessClaims:
    return authenticate(request)


def provide_viewer(request: Request[Any, Any, Any], state: State) -> AccessClaims:
    """The caller of a route a browser loads by URL (``<img src>`` cannot send a header): the bearer
    header, or ``?access_token=`` (the gateway redacts it from its access log)."""
    return authenticate(request, allow_query_token=True)


def authenticate(request: Request[Any, Any, Any], *, allow_query_token: bool = False) -> AccessClaims:
    """The caller of a request, verified once per request (the body check may have asked first)."""
    cached = request.scope.get("fechatter_caller")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    token = bearer_token(request.headers.get("authorization"))
    if token is None and allow_query_token:
        token = request.query_params.get("access_token") or None
    if token is None:
        raise unauthorized("Missing bearer token")
    try:
        claims = request.app.state.ctx.tokens.verify(token)
    except TokenError as exc:
        raise unauthorized(f"Invalid access token: {exc}") from None
    request.scope["fechatter_caller"] = claims  # type: ignore[typeddict-unknown-key]
    return claims


def client_ip(request: Request[Any, Any, Any]) -> str:
    """The client's address. The gateway replaces X-Forwarded-For with the address it saw (it never appends
    to a client-supplied one), and this service listens only where the gateway can reach it."""
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",", 1)[0].strip()[:64]
    return request.client.host if request.client else "unknown"
