"""Who is in a chat: listing, adding, removing, leaving and joining, and renaming a chat.

Permissions, by chat type:
- Single: exactly two people for ever; nobody is added or removed.
- Group: any member adds people; owner/admin remove others; anyone leaves.
- PrivateChannel: owner/admin add and remove; anyone leaves.
- PublicChannel: anyone in the workspace joins; members add others; owner/admin remove others.
The owner makes members admins and admins members again (not in a Single chat, whose two people are
equals); nobody changes the owner's role.
A new member starts with everything before their arrival read, so joining a busy channel does not bring
hundreds of unread messages. When the owner leaves, the earliest admin (else the earliest member) becomes
owner, so a chat with members always has one; the first to join a public channel that everyone has left
becomes its owner.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fechatter_core import events
from fechatter_core.db.schema import chat_members, chats, users, workspace_members
from fechatter_core.errors import forbidden, not_found, validation_error
from fechatter_core.outbox import record
from fechatter_core.security import AccessClaims
from fechatter_core.workspace_access import require_workspace_member
from fechatter_server.chats.queries import refuse_if_archived
from fechatter_server.chats.schemas import AddMembersRequest, ChatType, SetChatRoleRequest, UpdateChatRequest
from fechatter_server.chats.service import chat_event_data, load_chat_out
from fechatter_server.context import AppContext
from fechatter_server.views import ChatMemberOut, ChatOut, chat_member_out

MANAGERS = ("owner", "admin")


async def chat_and_role(
    conn: AsyncConnection, caller: AccessClaims, chat_id: int, *, lock: bool = False
) -> Any:
    """The chat (404 outside the caller's workspace) with the caller's role in it (None: not a member)."""
    query = (
        sa.select(
            chats.c.id,
            chats.c.chat_type,
            chats.c.owner_id,
            chats.c.last_seq,
            chats.c.archived_at,
            chat_members.c.role,
        )
        .select_from(chats)
        .outerjoin(
            chat_members,
            sa.and_(chat_members.c.chat_id == chats.c.id, chat_members.c.user_id == caller.user_id),
        )
        .where(chats.c.id == chat_id, chats.c.workspace_id == caller.workspace_id)
    )
    if lock:
        # Membership changes of one chat are serialised on its row (the same lock sends take).
        query = query.with_for_update(of=chats)
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        raise not_found("Chat not found")
    return row


_MEMBERS = (
    sa.select(users, chat_members.c.role)
    .join(chat_members, chat_members.c.user_id == users.c.id)
    .where(chat_members.c.chat_id == sa.bindparam("chat_id"))
)


async def list_members(ctx: AppContext, caller: AccessClaims, chat_id: int) -> list[ChatMemberOut]:
    async with ctx.engine.connect() as conn:
        chat = await chat_and_role(conn, caller, chat_id)
        if chat.role is None:
            if chat.chat_type != ChatType.PUBLIC_CHANNEL:
                raise forbidden("You are not a member of this chat")
            await require_workspace_member(conn, caller)  # a public channel is open to the workspace
        rows = (
            await conn.execute(_MEMBERS.order_by(chat_members.c.joined_at, users.c.id), {"chat_id": chat_id})
        ).all()
    return [chat_member_out(row, caller.workspace_id) for row in rows]


async def set_member_role(
    ctx: AppContext, caller: AccessClaims, chat_id: int, user_id: int, data: SetChatRoleRequest
) -> ChatMemberOut:
    async with ctx.engine.begin() as conn:
        chat = await chat_and_role(conn, caller, chat_id, lock=True)
        if chat.role is None:
            raise forbidden("You are not a member of this chat")
        if chat.chat_type == ChatType.SINGLE:
            raise validation_error("A direct chat has no roles to change", "role")
        if chat.role != "owner":
            raise forbidden("Only the chat's owner can change roles")
        refuse_if_archived(chat)
        target = (
            await conn.execute(_MEMBERS.where(users.c.id == user_id), {"chat_id": chat_id})
        ).one_or_none()
        if target is None:
            raise not_found("That user is not a member of this chat")
        if target.role == "owner":
            raise forbidden("The owner's role cannot be changed")
        changed = target.role != data.role
        if changed:
            await conn.execute(
                chat_members.update()
                .where(chat_members.c.chat_id == chat_id, chat_members.c.user_id == user_id)
                .values(role=data.role.value)
            )
            await record(
                conn,
                events.new_event(
                    events.CHAT_MEMBER_UPDATED,
                    workspace_id=caller.workspace_id,
                    actor_id=caller.user_id,
                    chat_id=chat_id,
                    data={
                        "chat_id": chat_id,
                        "user_id": user_id,
                        "role": data.role.value,
                        "updated_by": caller.user_id,
                    },
                ),
            )
        member = chat_member_out(target, caller.workspace_id)
        member.role = data.role.value
    if changed:
        ctx.publisher.wake()  # after the commit, so the publisher finds the event
    return member


def _may_add(chat: Any, caller: AccessClaims, user_ids: list[int]) -> None:
    chat_type = ChatType(chat.chat_type)
    if chat_type is ChatType.SINGLE:
        raise validation_error("A direct chat cannot take more members", "user_ids")
    if chat.role is None:
        if chat_type is ChatType.PUBLIC_CHANNEL and user_ids == [caller.user_id]:
            return  # joining a public channel
        raise forbidden("You are not a member of this chat")
    if chat_type is ChatType.PRIVATE_CHANNEL and chat.role not in MANAGERS:
        raise forbidden("Only the channel's owner or an admin can add people")


async def add_members(
    ctx: AppContext, caller: AccessClaims, chat_id: int, data: AddMembersRequest
) -> ChatOut:
    wanted = sorted(set(data.user_ids))
    async with ctx.engine.begin() as conn:
        # The people's workspace memberships are share-locked before the chat row, the order a removal
        # from the workspace takes them in: it waits for this to commit, then takes them out again.
        in_workspace = set(
            (
                await conn.scalars(
                    sa.select(workspace_members.c.user_id)
                    .where(
                        workspace_members.c.workspace_id == caller.workspace_id,
                        workspace_members.c.user_id.in_(wanted),
                    )
                    .with_for_update(read=True)
                )
            ).all()
        )
        chat = await chat_and_role(conn, caller, chat_id, lock=True)
        _may_add(chat, caller, wanted)
        refuse_if_archived(chat)
        strangers = [u for u in wanted if u not in in_workspace]
        if strangers:
            raise validation_error(f"Not members of this workspace: {strangers}", "user_ids")
        present = set(
            (
                await conn.scalars(
                    sa.select(chat_members.c.user_id).where(
                        chat_members.c.chat_id == chat_id, chat_members.c.user_id.in_(wanted)
                    )
                )
            ).all()
        )
        new = [u for u in wanted if u not in present]
        count = await conn.scalar(sa.select(sa.func.count()).where(chat_members.c.chat_id == chat_id))
        limit = ctx.settings.limits.chat_members_max
        if (count or 0) + len(new) > limit:
            raise validation_error(f"A chat has at most {limit} members", "user_ids")
        if new:
            # Someone joining a public channel that everyone has left takes it over: otherwise it would
            # keep as owner a person who is gone, and nobody could rename or archive it.
            heir = new[0] if not count else None
            await conn.execute(
                chat_members.insert(),
                [
                    {
                        "chat_id": chat_id,
                        "user_id": u,
                        "role": "owner" if u == heir else "member",
                        "last_read_seq": chat.last_seq,
                    }
                    for u in new
                ],
            )
            if heir is not None:
                await conn.execute(chats.update().where(chats.c.id == chat_id).values(owner_id=heir))
            for user_id in new:
                await record(
                    conn,
                    events.new_event(
                        events.CHAT_MEMBER_ADDED,
                        workspace_id=caller.workspace_id,
                        actor_id=caller.user_id,
                        chat_id=chat_id,
                        data={"chat_id": chat_id, "user_id": user_id, "added_by": caller.user_id},
                    ),
                )
        result = await load_chat_out(conn, caller, chat_id)
    if new:
        ctx.publisher.wake()
    return result


async def _next_owner(conn: AsyncConnection, chat_id: int) -> int | None:
    return await conn.scalar(
        sa.select(chat_members.c.user_id)
        .where(chat_members.c.chat_id == chat_id)
        .order_by((chat_members.c.role == "admin").desc(), chat_members.c.joined_at, chat_members.c.user_id)
        .limit(1)
    )


async def drop_member(
    conn: AsyncConnection, workspace_id: int, actor_id: int, chat: Any, user_id: int
) -> bool:
    """Take ``user_id`` out of ``chat`` (a row with ``id`` and ``owner_id``, locked by the caller), hand
    the ownership on if they owned it, and record the event. False: they were not a member."""
    removed = await conn.scalar(
        chat_members.delete()
        .where(chat_members.c.chat_id == chat.id, chat_members.c.user_id == user_id)
        .returning(chat_members.c.user_id)
    )
    if removed is None:
        return False
    if user_id == chat.owner_id:
        successor = await _next_owner(conn, chat.id)
        if successor is not None:
            await conn.execute(chats.update().where(chats.c.id == chat.id).values(owner_id=successor))
            await conn.execute(
                chat_members.update()
                .where(chat_members.c.chat_id == chat.id, chat_members.c.user_id == successor)
                .values(role="owner")
            )
    await record(
        conn,
        events.new_event(
            events.CHAT_MEMBER_REMOVED,
            workspace_id=workspace_id,
            actor_id=actor_id,
            chat_id=chat.id,
            data={"chat_id": chat.id, "user_id": user_id, "removed_by": actor_id},
        ),
    )
    return True


async def remove_member(ctx: AppContext, caller: AccessClaims, chat_id: int, user_id: int) -> dict[str, int]:
    async with ctx.engine.begin() as conn:
        chat = await chat_and_role(conn, caller, chat_id, lock=True)
        if chat.role is None:
            raise forbidden("You are not a member of this chat")
        if chat.chat_type == ChatType.SINGLE:
            raise validation_error("Nobody can leave or be removed from a direct chat", "user_id")
        leaving = user_id == caller.user_id
        if not leaving:
            if chat.role not in MANAGERS:
                raise forbidden("Only the chat's owner or an admin can remove people")
            if user_id == chat.owner_id:
                raise forbidden("The owner cannot be removed")
        if not await drop_member(conn, caller.workspace_id, caller.user_id, chat, user_id):
            raise not_found("That user is not a member of this chat")
    ctx.publisher.wake()
    return {"chat_id": chat_id, "user_id": user_id}


async def update_chat(
    ctx: AppContext, caller: AccessClaims, chat_id: int, data: UpdateChatRequest
) -> ChatOut:
    values: dict[str, str] = {}
    if data.name is not None:
        name = data.name.strip()
        if not name:
            raise validation_error("name must not be blank", "name")
        values["name"] = name
    if data.description is not None:
        values["description"] = data.description.strip()
    if not values:
        raise validation_error("Nothing to change: send name and/or description", "name")
    async with ctx.engine.begin() as conn:
        chat = await chat_and_role(conn, caller, chat_id, lock=True)
        if chat.role is None:
            raise forbidden("You are not a member of this chat")
        if chat.role not in MANAGERS:
            raise forbidden("Only the chat's owner or an admin can rename or describe it")
        if chat.chat_type == ChatType.SINGLE and "name" in values:
            raise validation_error("A direct chat has no name to change", "name")
        await conn.execute(chats.update().where(chats.c.id == chat_id).values(**values))
        result = await load_chat_out(conn, caller, chat_id)
        await record(
            conn,
            events.new_event(
                events.CHAT_UPDATED,
                workspace_id=caller.workspace_id,
                actor_id=caller.user_id,
                chat_id=chat_id,
                data=chat_event_data(result),
            ),
        )
    ctx.publisher.wake()
    return result
