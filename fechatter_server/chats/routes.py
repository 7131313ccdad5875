from __future__ import annotations

from typing import Annotated

from litestar import Response, Router, delete, get, patch, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from fechatter_core.api import Success, ok
from fechatter_core.security import AccessClaims
from fechatter_server.chats import archive, membership, service
from fechatter_server.chats.schemas import (
    AddMembersRequest,
    CreateChatRequest,
    SetChatRoleRequest,
    UpdateChatRequest,
)
from fechatter_server.context import AppContext
from fechatter_server.views import ChatMemberOut, ChatOut

ChatId = Annotated[int, Parameter(ge=1, le=2**62, description="Chat id")]


@get("/workspace/chats", summary="Chats the caller is a member of, most recent activity first")
async def list_chats(ctx: AppContext, caller: AccessClaims) -> Success[list[ChatOut]]:
    return ok(await service.list_chats(ctx, caller))


@post(
    "/workspace/chats",
    status_code=HTTP_201_CREATED,
    summary="Create a chat; a Single chat that already exists for the pair is returned with 200",
)
async def create_chat(
    ctx: AppContext, caller: AccessClaims, data: CreateChatRequest
) -> Response[Success[ChatOut]]:
    chat, created = await service.create_chat(ctx, caller, data)
    return Response(ok(chat), status_code=HTTP_201_CREATED if created else HTTP_200_OK)


@get("/chat/{chat_id:int}", summary="One chat (members only; anyone in the workspace for a PublicChannel)")
async def get_chat(ctx: AppContext, caller: AccessClaims, chat_id: ChatId) -> Success[ChatOut]:
    return ok(await service.get_chat(ctx, caller, chat_id))


@patch("/chat/{chat_id:int}", summary="Rename or describe a chat (owner or admin)")
async def update_chat(
    ctx: AppContext, caller: AccessClaims, chat_id: ChatId, data: UpdateChatRequest
) -> Success[ChatOut]:
    return ok(await membership.update_chat(ctx, caller, chat_id, data))


@get(
    "/chat/{chat_id:int}/members",
    summary="Members of a chat (anyone in the workspace for a PublicChannel)",
    description="Each member is the user with their `role` in the chat: `owner`, `admin` or `member`.",
)
async def list_members(
    ctx: AppContext, caller: AccessClaims, chat_id: ChatId
) -> Success[list[ChatMemberOut]]:
    return ok(await membership.list_members(ctx, caller, chat_id))


@post(
    "/chat/{chat_id:int}/members",
    status_code=HTTP_200_OK,
    summary="Add people to a chat",
    description="Group: any member adds. PrivateChannel: owner or admin. PublicChannel: members add others, "
    "anyone in the workspace may add themself (join). Single chats never change. People already in the chat "
    "are ignored. A new member starts with the existing history read.",
)
async def add_members(
    ctx: AppContext, caller: AccessClaims, chat_id: ChatId, data: AddMembersRequest
) -> Success[ChatOut]:
    return ok(await membership.add_members(ctx, caller, chat_id, data))


@delete(
    "/chat/{chat_id:int}/members/{user_id:int}",
    status_code=HTTP_200_OK,
    summary="Remove a member (owner or admin), or leave (your own id)",
    description="The owner cannot be removed; when the owner leaves, the earliest admin (else the earliest "
    "member) becomes owner.",
)
async def remove_member(
    ctx: AppContext,
    caller: AccessClaims,
    chat_id: ChatId,
    user_id: Annotated[int, Parameter(ge=1, le=2**62)],
) -> Success[dict[str, int]]:
    return ok(await membership.remove_member(ctx, caller, chat_id, user_id))


@patch(
    "/chat/{chat_id:int}/members/{user_id:int}",
    summary="Make a member an admin of the chat, or a member again (the chat's owner only)",
    description="Admins rename, describe, archive, add people to private channels, remove members and "
    "delete others' messages. The owner's role cannot be changed (ownership passes to the earliest admin "
    "when the owner leaves); a direct (Single) chat has no roles (400); an archived chat refuses the change "
    "(409). Setting the role a member already has changes nothing; a change reaches the chat's members as "
    "`chat_member_updated` (`{chat_id, user_id, role, updated_by}`).",
)
async def set_member_role(
    ctx: AppContext,
    caller: AccessClaims,
    chat_id: ChatId,
    user_id: Annotated[int, Parameter(ge=1, le=2**62)],
    data: SetChatRoleRequest,
) -> Success[ChatMemberOut]:
    return ok(await membership.set_member_role(ctx, caller, chat_id, user_id, data))


@post("/chat/{chat_id:int}/join", status_code=HTTP_200_OK, summary="Join a public channel")
async def join_channel(ctx: AppContext, caller: AccessClaims, chat_id: ChatId) -> Success[ChatOut]:
    return ok(
        await membership.add_members(ctx, caller, chat_id, AddMembersRequest(user_ids=[caller.user_id]))
    )


@post("/chat/{chat_id:int}/leave", status_code=HTTP_200_OK, summary="Leave a chat")
async def leave_chat(ctx: AppContext, caller: AccessClaims, chat_id: ChatId) -> Success[dict[str, int]]:
    return ok(await membership.remove_member(ctx, caller, chat_id, caller.user_id))


@get("/workspace/channels", summary="Public channels of the workspace, joined or not")
async def list_channels(ctx: AppContext, caller: AccessClaims) -> Success[list[ChatOut]]:
    return ok(await service.list_public_channels(ctx, caller))


_ARCHIVE_RULES = (
    "Owner or admin of the chat. An archived chat stays readable (messages, members, pins, receipts) but "
    'refuses sends, edits, reactions, pins and new members with 409 conflict ("chat is archived"); '
    "deletes and leaving still work. The chat shows `archived: true`. Direct (Single) chats cannot be "
    "archived (400). Repeating the call changes nothing; a change reaches the members as `chat_updated`."
)


@post(
    "/chat/{chat_id:int}/archive",
    status_code=HTTP_200_OK,
    summary="Archive a chat",
    description=_ARCHIVE_RULES,
)
async def archive_chat(ctx: AppContext, caller: AccessClaims, chat_id: ChatId) -> Success[ChatOut]:
    return ok(await archive.set_archived(ctx, caller, chat_id, archived=True))


@post(
    "/chat/{chat_id:int}/unarchive",
    status_code=HTTP_200_OK,
    summary="Unarchive a chat",
    description=_ARCHIVE_RULES,
)
async def unarchive_chat(ctx: AppContext, caller: AccessClaims, chat_id: ChatId) -> Success[ChatOut]:
    return ok(await archive.set_archived(ctx, caller, chat_id, archived=False))


router = Router(
    path="/api",
    route_handlers=[
        list_chats,
        create_chat,
        get_chat,
        update_chat,
        list_members,
        add_members,
        remove_member,
        set_member_role,
        join_channel,
        leave_chat,
        list_channels,
        archive_chat,
        unarchive_chat,
    ],
    tags=["chats"],
)
