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


# The caller providers take ``ctx`` (whose token cache they use) so that Litestar resolves the two
# dependencies one after the other: it resolves independent dependencies of a handler concurrently, in an
# anyio task group per request, which costs more than the two (synchronous) providers themselves.


def provide_caller(request: Request[Any, Any, Any], ctx: AppContext) -> AccessClaims:
    return authenticate(request, ctx=ctx)


def provide_viewer(request: Request[Any, Any, Any], ctx: AppContext) -> AccessClaims:
    """The caller of a route a browser loads by URL (``<img src>`` cannot send a header): the bearer
    header, or ``?access_token=`` (the gateway redacts it from its access log)."""
    return authenticate(request, ctx=ctx, allow_query_token=True)


def authenticate(
    request: Request[Any, Any, Any], *, ctx: AppContext | None = None, allow_query_token: bool = False
) -> AccessClaims:
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
        claims = (ctx or request.app.state.ctx).tokens.verify(token)
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
