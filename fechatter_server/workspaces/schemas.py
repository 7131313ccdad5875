from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

WorkspaceName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class CreateInviteRequest(msgspec.Struct, forbid_unknown_fields=True):
    max_uses: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None
    expires_in_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 90)] | None = None


class CreateWorkspaceRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: WorkspaceName


class JoinWorkspaceRequest(msgspec.Struct, forbid_unknown_fields=True):
    invite_code: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class AssignableRole(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class SetRoleRequest(msgspec.Struct, forbid_unknown_fields=True):
    role: AssignableRole
