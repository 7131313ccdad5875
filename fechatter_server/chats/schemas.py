from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

UserId = Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class ChatType(StrEnum):
    SINGLE = "Single"
    GROUP = "Group"
    PRIVATE_CHANNEL = "PrivateChannel"
    PUBLIC_CHANNEL = "PublicChannel"


class CreateChatRequest(msgspec.Struct, forbid_unknown_fields=True):
    chat_type: ChatType
    name: Annotated[str, msgspec.Meta(max_length=128)] = ""
    members: Annotated[list[UserId], msgspec.Meta(max_length=1000)] = msgspec.field(default_factory=list)
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class AddMembersRequest(msgspec.Struct, forbid_unknown_fields=True):
    user_ids: Annotated[list[UserId], msgspec.Meta(min_length=1, max_length=1000)]


class UpdateChatRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    description: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class ChatRole(StrEnum):
    """Roles the chat's owner assigns; ownership itself passes only when the owner leaves."""

    ADMIN = "admin"
    MEMBER = "member"


class SetChatRoleRequest(msgspec.Struct, forbid_unknown_fields=True):
    role: ChatRole
