"""Auth routes: thin wrappers over auth.service."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from fechatter_core.api import Success, ok
from fechatter_core.errors import unauthorized
from fechatter_core.security import AccessClaims
from fechatter_server.auth import service
from fechatter_server.auth.schemas import (
    ChangePasswordRequest,
    LogoutRequest,
    RefreshRequest,
    SigninRequest,
    SignupRequest,
)
from fechatter_server.context import AppContext
from fechatter_server.deps import client_ip
from fechatter_server.views import SessionOut, UserOut
from fechatter_server.workspaces.service import get_user

REFRESH_COOKIE = "refresh_token"


def _with_cookie(session: SessionOut, ctx: AppContext, status: int) -> Response[Success[SessionOut]]:
    cookie = Cookie(
        key=REFRESH_COOKIE,
        value=session.refresh_token,
        httponly=True,
        samesite="strict",
        path="/api",
        max_age=ctx.settings.auth.refresh_ttl_seconds,
    )
    return Response(ok(session), status_code=status, cookies=[cookie])


@post(
    "/signup", status_code=HTTP_201_CREATED, summary="Create an account (and a workspace, or join by invite)"
)
async def signup(
    ctx: AppContext, data: SignupRequest, request: Request[Any, Any, Any]
) -> Response[Success[SessionOut]]:
    session = await service.signup(ctx, data, request.headers.get("user-agent"))
    return _with_cookie(session, ctx, HTTP_201_CREATED)


@post("/signin", status_code=HTTP_200_OK, summary="Sign in with email and password")
async def signin(
    ctx: AppContext, data: SigninRequest, request: Request[Any, Any, Any]
) -> Response[Success[SessionOut]]:
    session = await service.signin(ctx, data, request.headers.get("user-agent"), client_ip(request))
    return _with_cookie(session, ctx, HTTP_200_OK)


@post(
    "/refresh", status_code=HTTP_200_OK, summary="Rotate a refresh token (body or cookie) for a new session"
)
async def refresh(
    ctx: AppContext, request: Request[Any, Any, Any], data: RefreshRequest | None = None
) -> Response[Success[SessionOut]]:
    token = (data.refresh_token if data else None) or request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise unauthorized("A refresh token is required (body refresh_token or the refresh_token cookie)")
    session = await service.refresh(ctx, token, request.headers.get("user-agent"))
    return _with_cookie(session, ctx, HTTP_200_OK)


@post(
    "/logout",
    status_code=HTTP_200_OK,
    summary="Revoke a refresh token (and the sessions rotated from it)",
)
async def logout(
    ctx: AppContext, caller: AccessClaims, request: Request[Any, Any, Any], data: LogoutRequest | None = None
) -> Response[Success[dict[str, bool]]]:
    token = (data.refresh_token if data else None) or request.cookies.get(REFRESH_COOKIE)
    await service.logout(ctx, caller.user_id, token)
    response: Response[Success[dict[str, bool]]] = Response(ok({"logged_out": True}))
    response.delete_cookie(REFRESH_COOKIE, path="/api")
    return response


@post("/logout-all", status_code=HTTP_200_OK, summary="End every session of the signed-in user")
async def logout_all(ctx: AppContext, caller: AccessClaims) -> Response[Success[dict[str, bool]]]:
    await service.logout_all(ctx, caller.user_id)
    response: Response[Success[dict[str, bool]]] = Response(ok({"logged_out": True}))
    response.delete_cookie(REFRESH_COOKIE, path="/api")
    return response


@post(
    "/users/change-password",
    status_code=HTTP_200_OK,
    summary="Change the password; every other session ends and a new one is returned",
)
async def change_password(
    ctx: AppContext, caller: AccessClaims, data: ChangePasswordRequest, request: Request[Any, Any, Any]
) -> Response[Success[SessionOut]]:
    session = await service.change_password(ctx, caller, data, request.headers.get("user-agent"))
    return _with_cookie(session, ctx, HTTP_200_OK)


@get(
    "/users/me",
    summary="The signed-in user",
)
async def me(ctx: AppContext, caller: AccessClaims) -> Success[UserOut]:
    return ok(await get_user(ctx, caller))


router = Router(
    path="/api",
    route_handlers=[signup, signin, refresh, logout, logout_all, change_password, me],
    tags=["auth"],
)
