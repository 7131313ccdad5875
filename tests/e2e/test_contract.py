"""The chat API's contract, route by route: a table of requests that must be refused, each with the status,
error code and field a client sees, and the database left exactly as it was.

One row per case. To cover a new route or rule, add rows: ``who`` picks the caller (see ``World``), the
path and body may name the world's objects as ``{private}``, ``{msg}``, ``{bob}`` and so on.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio

from tests.conftest import User, create_chat, invite, signup, team, unique_email
from tests.sse import send
from tests.stackutil import RunningStack

pytestmark = pytest.mark.e2e

MISSING = 999_999_999
HUGE = 2**63  # beyond every id and seq the API accepts
OVERSIZED = b'{"content": "' + b"x" * (1024 * 1024 + 10) + b'"}'  # over limits.body_max_bytes (1 MiB)


@dataclass(frozen=True)
class Raw:
    """A body sent as bytes, with the content type given (None: no Content-Type header)."""

    content: bytes
    content_type: str | None = "application/json"


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    code: str
    field: str | None = None
    body: Any = None  # JSON value, a Raw, or None for no body
    who: str = "alice"
    headers: dict[str, str] | None = None


def case(id: str, method: str, path: str, status: int, code: str, field: str | None = None, **kw: Any) -> Any:
    return pytest.param(Case(id, method, path, status, code, field, **kw), id=id)


# Callers: alice owns the workspace and the chats; bob is a plain member of the private chat; carol is in the
# workspace but not in the private chat; dave is in another workspace; "anon" sends no token, "garbage" a
# token that is not a JWT, "forged" one signed with another key, "expired" a correctly signed but expired one.
AUTH_FAILURES = ("anon", "garbage", "forged", "expired")

# Every route that needs a token, with a body that would otherwise be acceptable.
AUTHENTICATED_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/api/logout", {}),
    ("POST", "/api/logout-all", None),
    ("POST", "/api/users/change-password", {"current_password": "correct horse 1", "new_password": "x" * 12}),
    ("GET", "/api/users/me", None),
    ("GET", "/api/users", None),
    ("POST", "/api/workspace/invites", {}),
    ("GET", "/api/workspace/invites", None),
    ("DELETE", "/api/workspace/invites/{code}", None),
    ("PATCH", "/api/workspace/members/{bob}", {"role": "admin"}),
    ("DELETE", "/api/workspace/members/{bob}", None),
    ("GET", "/api/workspace/former-members", None),
    ("GET", "/api/workspaces", None),
    ("POST", "/api/workspaces", {"name": "Another"}),
    ("POST", "/api/workspaces/join", {"invite_code": "{code}"}),
    ("POST", "/api/workspaces/{ws}/switch", None),
    ("GET", "/api/workspace/chats", None),
    ("POST", "/api/workspace/chats", {"name": "x", "chat_type": "Group", "members": []}),
    ("GET", "/api/workspace/channels", None),
    ("GET", "/api/chat/{private}", None),
    ("PATCH", "/api/chat/{private}", {"name": "renamed"}),
    ("GET", "/api/chat/{private}/members", None),
    ("POST", "/api/chat/{private}/members", {"user_ids": ["{carol}"]}),
    ("DELETE", "/api/chat/{private}/members/{bob}", None),
    ("PATCH", "/api/chat/{private}/members/{bob}", {"role": "admin"}),
    ("POST", "/api/chat/{public}/join", None),
    ("POST", "/api/chat/{private}/leave", None),
    ("POST", "/api/chat/{private}/messages", {"content": "hi"}),
    ("GET", "/api/chat/{private}/messages", None),
    ("PATCH", "/api/chat/{private}/messages/{msg}", {"content": "edited"}),
    ("DELETE", "/api/chat/{private}/messages/{msg}", None),
    ("GET", "/api/chat/{private}/messages/{msg}/history", None),
    ("GET", "/api/chat/{private}/messages/{msg}/replies", None),
    ("POST", "/api/chat/{private}/read", {"seq": 1}),
    ("GET", "/api/unread-counts", None),
]

AUTH_CASES = [
    case(f"{who}-{method}-{path}", method, path, 401, "unauthorized", body=body, who=who)
    for method, path, body in AUTHENTICATED_ROUTES
    for who in AUTH_FAILURES
]

BODY_ROUTES: list[tuple[str, str, str]] = [
    # (method, path, who): routes taking a JSON body; for the shared malformed-body rows.
    ("POST", "/api/signup", "anon"),
    ("POST", "/api/signin", "anon"),
    ("POST", "/api/refresh", "anon"),
    ("POST", "/api/logout", "alice"),
    ("POST", "/api/users/change-password", "alice"),
    ("POST", "/api/workspace/invites", "alice"),
    ("PATCH", "/api/workspace/members/{bob}", "alice"),
    ("POST", "/api/workspaces", "alice"),
    ("POST", "/api/workspaces/join", "alice"),
    ("POST", "/api/workspace/chats", "alice"),
    ("PATCH", "/api/chat/{private}", "alice"),
    ("POST", "/api/chat/{private}/members", "alice"),
    ("PATCH", "/api/chat/{private}/members/{bob}", "alice"),
    ("POST", "/api/chat/{private}/messages", "alice"),
    ("PATCH", "/api/chat/{private}/messages/{msg}", "alice"),
    ("POST", "/api/chat/{private}/read", "alice"),
]

MALFORMED_CASES = [
    row
    for method, path, who in BODY_ROUTES
    for row in (
        case(
            f"truncated-json-{method}-{path}", method, path, 400, "bad_request", body=Raw(b'{"a": '), who=who
        ),
        case(f"not-json-{method}-{path}", method, path, 400, "bad_request", body=Raw(b"hello"), who=who),
        case(
            f"bad-utf8-{method}-{path}", method, path, 400, "bad_request", body=Raw(b'{"\xff": 1}'), who=who
        ),
        case(f"array-{method}-{path}", method, path, 400, "validation_error", body=[], who=who),
        case(f"string-{method}-{path}", method, path, 400, "validation_error", body="x", who=who),
        case(
            f"text-plain-{method}-{path}",
            method,
            path,
            415,
            "unsupported_media_type",
            body=Raw(b"{}", "text/plain"),
            who=who,
        ),
        case(
            f"form-{method}-{path}",
            method,
            path,
            415,
            "unsupported_media_type",
            body=Raw(b"a=1", "application/x-www-form-urlencoded"),
            who=who,
        ),
        case(
            f"oversized-{method}-{path}", method, path, 413, "payload_too_large", body=Raw(OVERSIZED), who=who
        ),
        case(
            f"unknown-field-{method}-{path}",
            method,
            path,
            400,
            "validation_error",
            "is_admin",
            body={"is_admin": True},
            who=who,
        ),
    )
]

P, M = "/api/chat/{private}", "/api/chat/{private}/messages/{msg}"
LONG = "x" * 5000

ROUTE_CASES = [
    # --- auth
    case("signup-no-fields", "POST", "/api/signup", 400, "validation_error", "email", body={}, who="anon"),
    case(
        "signup-email-type",
        "POST",
        "/api/signup",
        400,
        "validation_error",
        "email",
        body={"email": 5, "password": "correct horse", "fullname": "X"},
        who="anon",
    ),
    case(
        "signup-email-too-long",
        "POST",
        "/api/signup",
        400,
        "validation_error",
        "email",
        body={"email": "x" * 250 + "@e.st", "password": "correct horse", "fullname": "X"},
        who="anon",
    ),
    case(
        "signup-email-not-an-address",
        "POST",
        "/api/signup",
        400,
        "validation_error",
        "email",
        body={"email": "not an address", "password": "correct horse", "fullname": "X"},
        who="anon",
    ),
    case(
        "signup-password-short",
        "POST",
        "/api/signup",
        400,
        "validation_error",
        "password",
        body={"email": "new@example.test", "password": "short", "fullname": "X"},
        who="anon",
    ),
    case(
        "signup-password-long",
        "POST",
        "/api/signup",
        400,
        "validation_error",
        "password",
        body={"email": "new@example.test", "password": "p" * 129, "fullname": "X"},
        who="anon",
    ),
    case(
        "signup-fullname-empty",
        "POST",
        "/api/signup",
        400,
        "validation_error",
        "fullname",
        body={"email": "new@example.test", "password": "correct horse", "fullname": ""},
        who="anon",
    ),
    case(
        "signup-fullname-long",
        "POST",
        "/api/signup",
        400,
        "validation_error",
        "fullname",
        body={"email": "new@example.test", "password": "correct horse", "fullname": "f" * 65},
        who="anon",
    ),
    case(
        "signup-workspace-name-empty",
        "POST",
        "/api/signup",
        400,
        "validation_error",
        "workspace_name",
        body={
            "email": "new@example.test",
            "password": "correct horse",
            "fullname": "F",
            "workspace_name": "",
        },
        who="anon",
    ),
    case(
        "signup-unknown-invite",
        "POST",
        "/api/signup",
        400,
        "validation_error",
        "invite_code",
        body={
            "email": "new@example.test",
            "password": "correct horse",
            "fullname": "F",
            "invite_code": "nope",
        },
        who="anon",
    ),
    case(
        "signup-email-taken",
        "POST",
        "/api/signup",
        409,
        "email_taken",
        "email",
        body={"email": "{alice_email}", "password": "correct horse", "fullname": "F"},
        who="anon",
    ),
    case("signin-no-fields", "POST", "/api/signin", 400, "validation_error", "email", body={}, who="anon"),
    case(
        "signin-password-type",
        "POST",
        "/api/signin",
        400,
        "validation_error",
        "password",
        body={"email": "a@b.c", "password": 12345678},
        who="anon",
    ),
    case(
        "signin-unknown-invite",
        "POST",
        "/api/signin",
        400,
        "validation_error",
        "invite_code",
        body={"email": "{alice_email}", "password": "correct horse 1", "invite_code": "no such code"},
        who="anon",
    ),
    case(
        "signin-invite-too-long",
        "POST",
        "/api/signin",
        400,
        "validation_error",
        "invite_code",
        body={"email": "{alice_email}", "password": "correct horse 1", "invite_code": "c" * 65},
        who="anon",
    ),
    case(
        "signin-wrong-password-with-invite",
        "POST",
        "/api/signin",
        401,
        "invalid_credentials",
        body={"email": "{alice_email}", "password": "wrong password", "invite_code": "{code}"},
        who="anon",
    ),
    case(
        "signin-wrong-password",
        "POST",
        "/api/signin",
        401,
        "invalid_credentials",
        body={"email": "{alice_email}", "password": "wrong password"},
        who="anon",
    ),
    case(
        "signin-unknown-email",
        "POST",
        "/api/signin",
        401,
        "invalid_credentials",
        body={"email": "nobody@example.test", "password": "correct horse 1"},
        who="anon",
    ),
    case(
        "refresh-unknown",
        "POST",
        "/api/refresh",
        401,
        "unauthorized",
        body={"refresh_token": "x"},
        who="anon",
    ),
    # The gateway once kept the last Set-Cookie it relayed and sent it with everyone's requests.
    case("refresh-none", "POST", "/api/refresh", 401, "unauthorized", body={}, who="anon"),
    case("refresh-no-body", "POST", "/api/refresh", 401, "unauthorized", who="anon"),
    case(
        "refresh-type",
        "POST",
        "/api/refresh",
        400,
        "validation_error",
        "refresh_token",
        body={"refresh_token": 5},
        who="anon",
    ),
    case(
        "refresh-empty",
        "POST",
        "/api/refresh",
        400,
        "validation_error",
        "refresh_token",
        body={"refresh_token": ""},
        who="anon",
    ),
    case(
        "refresh-too-long",
        "POST",
        "/api/refresh",
        400,
        "validation_error",
        "refresh_token",
        body={"refresh_token": "r" * 257},
        who="anon",
    ),
    case(
        "refresh-an-access-token",
        "POST",
        "/api/refresh",
        401,
        "unauthorized",
        body={"refresh_token": "{alice_token}"},
        who="anon",
    ),
    case(
        "logout-token-type",
        "POST",
        "/api/logout",
        400,
        "validation_error",
        "refresh_token",
        body={"refresh_token": ["x"]},
    ),
    case(
        "change-password-wrong-current",
        "POST",
        "/api/users/change-password",
        401,
        "invalid_credentials",
        body={"current_password": "not the password", "new_password": "a new password"},
    ),
    case(
        "change-password-short",
        "POST",
        "/api/users/change-password",
        400,
        "validation_error",
        "new_password",
        body={"current_password": "correct horse 1", "new_password": "short"},
    ),
    case(
        "change-password-missing-current",
        "POST",
        "/api/users/change-password",
        400,
        "validation_error",
        "current_password",
        body={"new_password": "a new password"},
    ),
    # --- workspaces
    case("invite-by-member", "POST", "/api/workspace/invites", 403, "forbidden", body={}, who="bob"),
    case("invites-listed-by-member", "GET", "/api/workspace/invites", 403, "forbidden", who="bob"),
    case(
        "invite-zero-uses",
        "POST",
        "/api/workspace/invites",
        400,
        "validation_error",
        "max_uses",
        body={"max_uses": 0},
    ),
    case(
        "invite-negative-uses",
        "POST",
        "/api/workspace/invites",
        400,
        "validation_error",
        "max_uses",
        body={"max_uses": -5},
    ),
    case(
        "invite-huge-uses",
        "POST",
        "/api/workspace/invites",
        400,
        "validation_error",
        "max_uses",
        body={"max_uses": HUGE},
    ),
    case(
        "invite-uses-as-string",
        "POST",
        "/api/workspace/invites",
        400,
        "validation_error",
        "max_uses",
        body={"max_uses": "5"},
    ),
    case(
        "invite-zero-hours",
        "POST",
        "/api/workspace/invites",
        400,
        "validation_error",
        "expires_in_hours",
        body={"expires_in_hours": 0},
    ),
    case(
        "invite-too-many-hours",
        "POST",
        "/api/workspace/invites",
        400,
        "validation_error",
        "expires_in_hours",
        body={"expires_in_hours": 24 * 90 + 1},
    ),
    case("revoke-invite-by-member", "DELETE", "/api/workspace/invites/{code}", 403, "forbidden", who="bob"),
    case("revoke-unknown-invite", "DELETE", "/api/workspace/invites/nope", 404, "not_found"),
    case("revoke-invite-elsewhere", "DELETE", "/api/workspace/invites/{code}", 404, "not_found", who="dave"),
    case(
        "revoke-invite-code-too-long",
        "DELETE",
        "/api/workspace/invites/" + "c" * 65,
        400,
        "validation_error",
        "code",
    ),
    case(
        "role-by-member",
        "PATCH",
        "/api/workspace/members/{carol}",
        403,
        "forbidden",
        body={"role": "admin"},
        who="bob",
    ),
    case(
        "role-owner",
        "PATCH",
        "/api/workspace/members/{bob}",
        400,
        "validation_error",
        "role",
        body={"role": "owner"},
    ),
    case("role-missing", "PATCH", "/api/workspace/members/{bob}", 400, "validation_error", "role", body={}),
    case(
        "role-unknown-user",
        "PATCH",
        f"/api/workspace/members/{MISSING}",
        404,
        "not_found",
        body={"role": "admin"},
    ),
    case(
        "role-other-workspace",
        "PATCH",
        "/api/workspace/members/{dave}",
        404,
        "not_found",
        body={"role": "admin"},
    ),
    case(
        "role-zero-id",
        "PATCH",
        "/api/workspace/members/0",
        400,
        "validation_error",
        "user_id",
        body={"role": "admin"},
    ),
    case(
        "role-huge-id",
        "PATCH",
        f"/api/workspace/members/{HUGE}",
        400,
        "validation_error",
        "user_id",
        body={"role": "admin"},
    ),
    case("remove-by-member", "DELETE", "/api/workspace/members/{carol}", 403, "forbidden", who="bob"),
    case("remove-the-owner", "DELETE", "/api/workspace/members/{alice}", 403, "forbidden"),
    case("remove-unknown-user", "DELETE", f"/api/workspace/members/{MISSING}", 404, "not_found"),
    case("remove-other-workspace", "DELETE", "/api/workspace/members/{dave}", 404, "not_found"),
    case("remove-zero-id", "DELETE", "/api/workspace/members/0", 400, "validation_error", "user_id"),
    case("remove-huge-id", "DELETE", f"/api/workspace/members/{HUGE}", 400, "validation_error", "user_id"),
    case("remove-text-id", "DELETE", "/api/workspace/members/bob", 404, "not_found"),
    case("workspace-no-name", "POST", "/api/workspaces", 400, "validation_error", "name", body={}),
    case(
        "workspace-empty-name", "POST", "/api/workspaces", 400, "validation_error", "name", body={"name": ""}
    ),
    case(
        "workspace-long-name",
        "POST",
        "/api/workspaces",
        400,
        "validation_error",
        "name",
        body={"name": "w" * 65},
    ),
    case(
        "join-unknown-invite",
        "POST",
        "/api/workspaces/join",
        400,
        "validation_error",
        "invite_code",
        body={"invite_code": "nope"},
    ),
    case(
        "join-empty-invite",
        "POST",
        "/api/workspaces/join",
        400,
        "validation_error",
        "invite_code",
        body={"invite_code": ""},
    ),
    case("switch-not-a-member", "POST", "/api/workspaces/{dave_ws}/switch", 404, "not_found"),
    case("switch-missing", "POST", f"/api/workspaces/{MISSING}/switch", 404, "not_found"),
    case("switch-zero", "POST", "/api/workspaces/0/switch", 400, "validation_error", "workspace_id"),
    # --- chats
    case("chat-no-type", "POST", "/api/workspace/chats", 400, "validation_error", "chat_type", body={}),
    case(
        "chat-unknown-type",
        "POST",
        "/api/workspace/chats",
        400,
        "validation_error",
        "chat_type",
        body={"chat_type": "Bogus"},
    ),
    case(
        "chat-member-as-string",
        "POST",
        "/api/workspace/chats",
        400,
        "validation_error",
        "members",
        body={"chat_type": "Group", "name": "g", "members": ["2"]},
    ),
    case(
        "chat-member-zero",
        "POST",
        "/api/workspace/chats",
        400,
        "validation_error",
        "members",
        body={"chat_type": "Group", "name": "g", "members": [0]},
    ),
    case(
        "chat-too-many-members",
        "POST",
        "/api/workspace/chats",
        400,
        "validation_error",
        "members",
        body={"chat_type": "Group", "name": "g", "members": list(range(1, 1002))},
    ),
    case(
        "chat-name-too-long",
        "POST",
        "/api/workspace/chats",
        400,
        "validation_error",
        "name",
        body={"chat_type": "Group", "name": "n" * 129, "members": []},
    ),
    case(
        "chat-description-too-long",
        "POST",
        "/api/workspace/chats",
        400,
        "validation_error",
        "description",
        body={"chat_type": "Group", "name": "g", "members": [], "description": "d" * 2001},
    ),
    case(
        "chat-single-without-member",
        "POST",
        "/api/workspace/chats",
        400,
        "validation_error",
        "members",
        body={"chat_type": "Single", "members": []},
    ),
    case(
        "chat-single-with-two",
        "POST",
        "/api/workspace/chats",
        400,
        "validation_error",
        "members",
        body={"chat_type": "Single", "members": ["{bob}", "{carol}"]},
    ),
    case(
        "chat-member-other-workspace",
        "POST",
        "/api/workspace/chats",
        400,
        "validation_error",
        "members",
        body={"chat_type": "Group", "name": "g", "members": ["{dave}"]},
    ),
    case(
        "chat-member-unknown",
        "POST",
        "/api/workspace/chats",
        400,
        "validation_error",
        "members",
        body={"chat_type": "Group", "name": "g", "members": [MISSING]},
    ),
    case("get-chat-stranger", "GET", P, 403, "forbidden", who="carol"),
    case("get-chat-other-workspace", "GET", P, 404, "not_found", who="dave"),
    case("get-chat-missing", "GET", f"/api/chat/{MISSING}", 404, "not_found"),
    case("get-chat-zero", "GET", "/api/chat/0", 400, "validation_error", "chat_id"),
    case("get-chat-huge", "GET", f"/api/chat/{HUGE}", 400, "validation_error", "chat_id"),
    case("get-chat-negative", "GET", "/api/chat/-1", 400, "validation_error", "chat_id"),
    case("rename-by-member", "PATCH", P, 403, "forbidden", body={"name": "mine"}, who="bob"),
    case("rename-by-stranger", "PATCH", P, 403, "forbidden", body={"name": "mine"}, who="carol"),
    case("rename-other-workspace", "PATCH", P, 404, "not_found", body={"name": "mine"}, who="dave"),
    case("rename-missing", "PATCH", f"/api/chat/{MISSING}", 404, "not_found", body={"name": "x"}),
    case("rename-nothing", "PATCH", P, 400, "validation_error", "name", body={}),
    case("rename-too-long", "PATCH", P, 400, "validation_error", "name", body={"name": "n" * 129}),
    case("describe-type", "PATCH", P, 400, "validation_error", "description", body={"description": 5}),
    case("members-stranger", "GET", P + "/members", 403, "forbidden", who="carol"),
    case("members-other-workspace", "GET", P + "/members", 404, "not_found", who="dave"),
    case("add-nobody", "POST", P + "/members", 400, "validation_error", "user_ids", body={}),
    case("add-empty", "POST", P + "/members", 400, "validation_error", "user_ids", body={"user_ids": []}),
    case(
        "add-string-id", "POST", P + "/members", 400, "validation_error", "user_ids", body={"user_ids": ["1"]}
    ),
    case(
        "add-private-by-member",
        "POST",
        P + "/members",
        403,
        "forbidden",
        body={"user_ids": ["{carol}"]},
        who="bob",
    ),
    case(
        "add-self-to-private",
        "POST",
        P + "/members",
        403,
        "forbidden",
        body={"user_ids": ["{carol}"]},
        who="carol",
    ),
    case(
        "add-from-other-workspace",
        "POST",
        P + "/members",
        400,
        "validation_error",
        "user_ids",
        body={"user_ids": ["{dave}"]},
    ),
    case(
        "chat-role-by-member",
        "PATCH",
        P + "/members/{bob}",
        403,
        "forbidden",
        body={"role": "admin"},
        who="bob",
    ),
    case(
        "chat-role-by-stranger",
        "PATCH",
        P + "/members/{bob}",
        403,
        "forbidden",
        body={"role": "admin"},
        who="carol",
    ),
    case(
        "chat-role-other-workspace",
        "PATCH",
        P + "/members/{bob}",
        404,
        "not_found",
        body={"role": "admin"},
        who="dave",
    ),
    case("chat-role-of-owner", "PATCH", P + "/members/{alice}", 403, "forbidden", body={"role": "member"}),
    case("chat-role-non-member", "PATCH", P + "/members/{carol}", 404, "not_found", body={"role": "admin"}),
    case(
        "chat-role-owner",
        "PATCH",
        P + "/members/{bob}",
        400,
        "validation_error",
        "role",
        body={"role": "owner"},
    ),
    case(
        "chat-role-unknown",
        "PATCH",
        P + "/members/{bob}",
        400,
        "validation_error",
        "role",
        body={"role": "boss"},
    ),
    case("chat-role-missing", "PATCH", P + "/members/{bob}", 400, "validation_error", "role", body={}),
    case("chat-role-type", "PATCH", P + "/members/{bob}", 400, "validation_error", "role", body={"role": 1}),
    case(
        "chat-role-zero",
        "PATCH",
        P + "/members/0",
        400,
        "validation_error",
        "user_id",
        body={"role": "admin"},
    ),
    case(
        "chat-role-huge",
        "PATCH",
        P + f"/members/{HUGE}",
        400,
        "validation_error",
        "user_id",
        body={"role": "admin"},
    ),
    case(
        "chat-role-missing-chat",
        "PATCH",
        f"/api/chat/{MISSING}/members/{{bob}}",
        404,
        "not_found",
        body={"role": "admin"},
    ),
    case("remove-owner-by-member", "DELETE", P + "/members/{alice}", 403, "forbidden", who="bob"),
    case("remove-by-stranger", "DELETE", P + "/members/{bob}", 403, "forbidden", who="carol"),
    case("remove-other-workspace", "DELETE", P + "/members/{bob}", 404, "not_found", who="dave"),
    case("remove-non-member", "DELETE", P + "/members/{carol}", 404, "not_found"),
    case("remove-zero", "DELETE", P + "/members/0", 400, "validation_error", "user_id"),
    case("join-private", "POST", P + "/join", 403, "forbidden", who="carol"),
    case("join-public-other-workspace", "POST", "/api/chat/{public}/join", 404, "not_found", who="dave"),
    case("join-missing", "POST", f"/api/chat/{MISSING}/join", 404, "not_found"),
    case("leave-not-a-member", "POST", P + "/leave", 403, "forbidden", who="carol"),
    case("leave-other-workspace", "POST", P + "/leave", 404, "not_found", who="dave"),
    # --- messages
    case("send-stranger", "POST", P + "/messages", 403, "forbidden", body={"content": "hi"}, who="carol"),
    case(
        "send-other-workspace", "POST", P + "/messages", 404, "not_found", body={"content": "hi"}, who="dave"
    ),
    case(
        "send-missing-chat", "POST", f"/api/chat/{MISSING}/messages", 404, "not_found", body={"content": "x"}
    ),
    case("send-nothing", "POST", P + "/messages", 400, "validation_error", "content", body={}),
    case("send-null", "POST", P + "/messages", 400, "validation_error", "content", body={"content": None}),
    case(
        "send-over-decoder-cap",
        "POST",
        P + "/messages",
        400,
        "validation_error",
        "content",
        body={"content": "x" * 16001},
    ),
    case(
        "send-too-long", "POST", P + "/messages", 400, "validation_error", "content", body={"content": LONG}
    ),
    case(
        "send-file-as-string",
        "POST",
        P + "/messages",
        400,
        "validation_error",
        "files",
        body={"content": "x", "files": ["a"]},
    ),
    case(
        "send-too-many-files",
        "POST",
        P + "/messages",
        400,
        "validation_error",
        "files",
        body={"content": "x", "files": list(range(1, 12))},
    ),
    case(
        "send-reply-as-string",
        "POST",
        P + "/messages",
        400,
        "validation_error",
        "reply_to",
        body={"content": "x", "reply_to": "1"},
    ),
    case(
        "send-reply-huge",
        "POST",
        P + "/messages",
        400,
        "validation_error",
        "reply_to",
        body={"content": "x", "reply_to": HUGE},
    ),
    case(
        "send-reply-to-other-chat",
        "POST",
        P + "/messages",
        400,
        "validation_error",
        "reply_to",
        body={"content": "x", "reply_to": "{public_msg}"},
    ),
    case(
        "send-key-too-long",
        "POST",
        P + "/messages",
        400,
        "validation_error",
        "idempotency_key",
        body={"content": "x", "idempotency_key": "k" * 129},
    ),
    # PostgreSQL text cannot hold NUL: refused as input, never a database error.
    case(
        "send-key-nul",
        "POST",
        P + "/messages",
        400,
        "validation_error",
        "idempotency_key",
        body={"content": "x", "idempotency_key": "k\x00"},
    ),
    case(
        "send-content-nul",
        "POST",
        P + "/messages",
        400,
        "validation_error",
        "content",
        body={"content": "a\x00b"},
    ),
    case(
        "send-header-key-too-long",
        "POST",
        P + "/messages",
        400,
        "validation_error",
        "idempotency_key",
        body={"content": "x"},
        headers={"Idempotency-Key": "k" * 129},
    ),
    case(
        "send-key-reused-other-content",
        "POST",
        P + "/messages",
        409,
        "idempotency_conflict",
        body={"content": "something else", "idempotency_key": "contract-key"},
    ),
    case(
        "send-header-key-reused-other-content",
        "POST",
        P + "/messages",
        409,
        "idempotency_conflict",
        body={"content": "something else"},
        headers={"Idempotency-Key": "contract-key"},
    ),
    case("list-stranger", "GET", P + "/messages", 403, "forbidden", who="carol"),
    case("list-other-workspace", "GET", P + "/messages", 404, "not_found", who="dave"),
    case("list-limit-high", "GET", P + "/messages?limit=201", 400, "validation_error", "limit"),
    case("list-limit-negative", "GET", P + "/messages?limit=-1", 400, "validation_error", "limit"),
    case("list-limit-text", "GET", P + "/messages?limit=ten", 400, "validation_error", "limit"),
    case("list-before-text", "GET", P + "/messages?before=x", 400, "validation_error", "before"),
    case("list-after-huge", "GET", P + f"/messages?after={HUGE}", 400, "validation_error", "after"),
    case("list-before-and-after", "GET", P + "/messages?before=3&after=1", 400, "validation_error", "before"),
    case("edit-by-member", "PATCH", M, 403, "forbidden", body={"content": "mine"}, who="bob"),
    case("edit-by-stranger", "PATCH", M, 403, "forbidden", body={"content": "mine"}, who="carol"),
    case("edit-other-workspace", "PATCH", M, 404, "not_found", body={"content": "mine"}, who="dave"),
    case("edit-missing", "PATCH", P + f"/messages/{MISSING}", 404, "not_found", body={"content": "x"}),
    case(
        "edit-through-other-chat",
        "PATCH",
        "/api/chat/{public}/messages/{msg}",
        404,
        "not_found",
        body={"content": "x"},
    ),
    case("edit-nothing", "PATCH", M, 400, "validation_error", "content", body={}),
    case("edit-blank", "PATCH", M, 400, "validation_error", "content", body={"content": "  "}),
    case("edit-too-long", "PATCH", M, 400, "validation_error", "content", body={"content": LONG}),
    case("delete-by-member", "DELETE", M, 403, "forbidden", who="bob"),
    case("delete-by-stranger", "DELETE", M, 403, "forbidden", who="carol"),
    case("delete-other-workspace", "DELETE", M, 404, "not_found", who="dave"),
    case("delete-missing", "DELETE", P + f"/messages/{MISSING}", 404, "not_found"),
    case("delete-zero", "DELETE", P + "/messages/0", 400, "validation_error", "message_id"),
    case("history-stranger", "GET", M + "/history", 403, "forbidden", who="carol"),
    case("history-other-workspace", "GET", M + "/history", 404, "not_found", who="dave"),
    case("history-missing", "GET", P + f"/messages/{MISSING}/history", 404, "not_found"),
    case("replies-stranger", "GET", M + "/replies", 403, "forbidden", who="carol"),
    case("replies-missing", "GET", P + f"/messages/{MISSING}/replies", 404, "not_found"),
    case("replies-limit-zero", "GET", M + "/replies?limit=0", 400, "validation_error", "limit"),
    case("replies-after-negative", "GET", M + "/replies?after=-1", 400, "validation_error", "after"),
    # --- reads (body cases live in test_reads.py)
    case("read-missing-chat", "POST", f"/api/chat/{MISSING}/read", 404, "not_found", body={"seq": 1}),
    case("read-other-workspace", "POST", P + "/read", 404, "not_found", body={"seq": 1}, who="dave"),
    # --- anything else
    case("unknown-route", "GET", "/api/no-such-thing", 404, "not_found"),
    case("wrong-method", "PUT", P, 405, "method_not_allowed", body={"name": "x"}),
]


@dataclass
class World:
    users: dict[str, User]
    values: dict[str, Any]
    tokens: dict[str, str | None]

    def fill(self, value: Any) -> Any:
        """Put the world's ids into a path or body; a string that is exactly "{name}" becomes the value."""
        if isinstance(value, str):
            if value.startswith("{") and value.endswith("}") and value[1:-1] in self.values:
                return self.values[value[1:-1]]
            return value.format(**self.values) if "{" in value else value
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        return value


def forged_tokens(stack: RunningStack, real: str) -> dict[str, str]:
    claims = jwt.decode(real, options={"verify_signature": False})
    now = int(time.time())
    expired = {**claims, "iat": now - 7200, "exp": now - 3600}
    secret = stack.secrets()["jwt_secret"]
    return {
        "forged": jwt.encode(claims, "another key, long enough for HS256 signing", algorithm="HS256"),
        "expired": jwt.encode(expired, secret, algorithm="HS256"),
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(stack: RunningStack) -> World:
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as http:
        alice, bob, carol = await team(http, 3)
        dave = await signup(http, email=unique_email("dave"))
        private = await create_chat(http, alice, [bob], chat_type="PrivateChannel")
        public = await create_chat(http, alice, [], chat_type="PublicChannel", name="open")
        msg = (await send(http, alice, private["id"], "the original")).json()["data"]
        keyed = await send(http, alice, private["id"], "keyed", idempotency_key="contract-key")
        assert keyed.status_code == 201, keyed.text
        public_msg = (await send(http, alice, public["id"], "in public")).json()["data"]
        code = await invite(http, alice)
        me = (await http.get("/api/users/me", headers=alice.auth)).json()["data"]
    users = {"alice": alice, "bob": bob, "carol": carol, "dave": dave}
    values = {
        **{name: user.id for name, user in users.items()},
        "ws": alice.workspace_id,
        "dave_ws": dave.workspace_id,
        "private": private["id"],
        "public": public["id"],
        "msg": msg["id"],
        "public_msg": public_msg["id"],
        "code": code,
        "alice_email": me["email"],
        "alice_token": alice.token,
    }
    tokens: dict[str, str | None] = {name: user.token for name, user in users.items()}
    tokens.update({"anon": None, "garbage": "not-a-jwt", **forged_tokens(stack, alice.token)})
    return World(users, values, tokens)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def db(stack: RunningStack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.database_url())
    try:
        yield conn
    finally:
        await conn.close()


DIGEST = "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{table}\" t"


async def snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    """Every table's row count and a digest of its rows, and how many events were ever written: the outbox
    is drained by the publisher, so its id sequence stands for it."""
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename NOT IN ('outbox', 'alembic_version') ORDER BY tablename"
    )
    state: dict[str, Any] = {}
    for row in tables:
        name = row["tablename"]
        state[name] = tuple(await conn.fetchrow(DIGEST.format(table=name)))
    state["outbox_id_seq"] = tuple(await conn.fetchrow("SELECT last_value, is_called FROM outbox_id_seq"))
    return state


async def request(client: httpx.AsyncClient, world: World, c: Case) -> httpx.Response:
    headers = dict(c.headers or {})
    token = world.tokens[c.who]
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    kwargs: dict[str, Any] = {}
    if isinstance(c.body, Raw):
        kwargs["content"] = c.body.content
        if c.body.content_type:
            headers["content-type"] = c.body.content_type
    elif c.body is not None:
        kwargs["json"] = world.fill(c.body)
    client.cookies.clear()
    return await client.request(c.method, world.fill(c.path), headers=headers, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str, field: str | None) -> None:
    assert response.headers.get("x-request-id"), "every response carries x-request-id"
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    envelope = response.json()
    assert set(envelope) == {"success", "error"}
    assert envelope["success"] is False
    error = envelope["error"]
    assert set(error) <= {"code", "message", "field"}
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    assert error.get("field") == field, error
    if status == 429:
        assert response.headers.get("retry-after")


@pytest.mark.parametrize("c", ROUTE_CASES + AUTH_CASES + MALFORMED_CASES)
async def test_refused_requests_answer_in_the_envelope_and_change_nothing(
    client: httpx.AsyncClient, world: World, db: asyncpg.Connection, c: Case
) -> None:
    before = await snapshot(db)
    response = await request(client, world, c)
    assert_error(response, c.status, c.code, c.field)
    assert await snapshot(db) == before


async def test_every_authenticated_route_is_in_the_table(client: httpx.AsyncClient) -> None:
    """A route added to the API without rows here fails this test (public routes are listed by name)."""
    spec = (await client.get("/api/openapi.json")).json()
    public = {("POST", "/api/signup"), ("POST", "/api/signin"), ("POST", "/api/refresh")}
    documented = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    tabled = {(method, _template(path)) for method, path, _ in AUTHENTICATED_ROUTES}
    # Routes other branches add are theirs to table; this one checks the routes this table knows.
    known_prefixes = ("/api/users", "/api/workspace", "/api/chat/{chat_id}", "/api/unread-counts", "/api/log")
    expected = {(m, p) for m, p in documented - public if p.startswith(known_prefixes) and not _others(p)}
    assert expected <= tabled, sorted(expected - tabled)


def _template(path: str) -> str:
    names = {
        "{private}": "{chat_id}",
        "{public}": "{chat_id}",
        "{msg}": "{message_id}",
        "{bob}": "{user_id}",
        "{code}": "{code}",
        "{ws}": "{workspace_id}",
    }
    for placeholder, name in names.items():
        path = path.replace(placeholder, name)
    return path


def _others(path: str) -> bool:
    """Routes of features other work adds (reactions, pins, receipts, files, typing, archive)."""
    return any(
        word in path
        for word in ("reaction", "/pin", "receipts", "typing", "archive", "mentions", "files", "presence")
    )


async def test_a_session_for_the_wrong_workspace_sees_nothing_of_this_one(
    client: httpx.AsyncClient, world: World, db: asyncpg.Connection
) -> None:
    """Bob's own session in a workspace he created is scoped to that workspace: the first workspace's
    chat is not found through it, though Bob is a member of that chat."""
    bob = world.users["bob"]
    created = await client.post("/api/workspaces", headers=bob.auth, json={"name": "Bob's own"})
    assert created.status_code == 201, created.text
    other = created.json()["data"]["access_token"]
    before = await snapshot(db)
    for method, path in [("GET", "/api/chat/{private}"), ("GET", "/api/chat/{private}/messages")]:
        response = await client.request(
            method, world.fill(path), headers={"Authorization": f"Bearer {other}"}
        )
        assert_error(response, 404, "not_found", None)
    response = await client.post(
        world.fill("/api/chat/{private}/messages"),
        headers={"Authorization": f"Bearer {other}"},
        json={"content": "wrong place"},
    )
    assert_error(response, 404, "not_found", None)
    assert await snapshot(db) == before
