from __future__ import annotations

from typing import Annotated

import msgspec

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, description="The user's email address")]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
FullName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
WorkspaceName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
InviteCode = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
RefreshToken = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class SignupRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    fullname: FullName
    workspace_name: WorkspaceName | None = None
    invite_code: InviteCode | None = None


class SigninRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Annotated[str, msgspec.Meta(max_length=128)]
    # Join that workspace (or go to it, when a member already) with this session.
    invite_code: InviteCode | None = None


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: RefreshToken | None = None


class LogoutRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: RefreshToken | None = None


class ChangePasswordRequest(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Annotated[str, msgspec.Meta(max_length=128)]
    new_password: Password
