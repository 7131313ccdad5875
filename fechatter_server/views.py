"""The public shapes of API.md, and the one place rows become those shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

_encode_json = msgspec.json.Encoder().encode


def iso(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, microseconds when there are any. A page of history formats hundreds
    of these: msgspec's encoder writes exactly this form for a UTC datetime, in C."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return _encode_json(value)[1:-1].decode()


class UserOut(msgspec.Struct):
    id: int
    email: str
    fullname: str
    workspace_id: int
    is_bot: bool
    created_at: str


WorkspaceRole = Literal["owner", "admin", "member"]


class WorkspaceUserOut(UserOut):
    """A person as their workspace lists them: the user and their role there."""

    role: WorkspaceRole


def workspace_user_out(row: Any, workspace_id: int) -> WorkspaceUserOut:
    """``row``: a user with the ``role`` of their workspace membership."""
    return WorkspaceUserOut(**msgspec.structs.asdict(user_out(row, workspace_id)), role=row.role)


class FormerMemberOut(msgspec.Struct):
    """Someone who left the workspace or was removed from it: a name for their past messages."""

    id: int
    fullname: str
    left_at: str
    # Who removed them; None when they left by themselves.
    removed_by: int | None


class RemovedMemberOut(msgspec.Struct):
    user_id: int
    # The chats they were taken out of (their direct messages stay, for the other person).
    chats_left: list[int]


class ChatMemberOut(UserOut):
    """A member as a chat lists them: the user and their role in that chat (owner, admin or member)."""

    role: str = "member"


class WorkspaceOut(msgspec.Struct):
    id: int
    name: str
    owner_id: int


class SessionOut(msgspec.Struct):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: UserOut
    workspace: WorkspaceOut


class FileOut(msgspec.Struct, omit_defaults=True):
    id: int
    filename: str
    size: int
    mime_type: str
    url: str
    # Only for images: their size, and a thumbnail when one could be made.
    width: int | None = None
    height: int | None = None
    thumbnail_url: str | None = None


class ReactionOut(msgspec.Struct):
    emoji: str
    count: int
    user_ids: list[int]


class MessageOut(msgspec.Struct):
    id: int
    chat_id: int
    seq: int
    sender_id: int
    content: str
    files: list[FileOut]
    reply_to: int | None
    idempotency_key: str | None
    created_at: str
    edited_at: str | None
    deleted: bool
    # Replies to this message that are not deleted (migration 0009). A message's event carries the count
    # at that moment; a new reply does not announce its parent again: a client holding the parent counts
    # the reply's ``reply_to``.
    reply_count: int = 0
    # Filled for a page of messages at once by messages/decorate.py.
    reactions: list[ReactionOut] = msgspec.field(default_factory=list)
    mentions: list[int] = msgspec.field(default_factory=list)


class ChatOut(msgspec.Struct):
    id: int
    workspace_id: int
    name: str
    chat_type: str
    description: str
    owner_id: int
    member_ids: list[int]
    last_seq: int
    unread_count: int
    last_message: MessageOut | None
    created_at: str
    archived: bool = False
    unread_mentions: int = 0


class InviteOut(msgspec.Struct):
    code: str
    expires_at: str
    max_uses: int | None = None
    uses: int = 0


class WorkspaceMembershipOut(msgspec.Struct):
    id: int
    name: str
    owner_id: int
    role: str


class ReadStateOut(msgspec.Struct):
    chat_id: int
    last_read_seq: int
    unread_count: int


def user_out(row: Any, workspace_id: int) -> UserOut:
    return UserOut(
        id=row.id,
        email=row.email,
        fullname=row.fullname,
        workspace_id=workspace_id,
        is_bot=row.is_bot,
        created_at=iso(row.created_at) or "",
    )


def chat_member_out(row: Any, workspace_id: int) -> ChatMemberOut:
    return ChatMemberOut(**msgspec.structs.asdict(user_out(row, workspace_id)), role=row.role)


def workspace_out(row: Any) -> WorkspaceOut:
    return WorkspaceOut(id=row.id, name=row.name, owner_id=row.owner_id)


def message_of(
    id: int,
    chat_id: int,
    seq: int,
    sender_id: int,
    content: str,
    reply_to: int | None,
    idempotency_key: str | None,
    created_at: datetime,
    edited_at: datetime | None,
    deleted_at: datetime | None,
    reply_count: int,
) -> MessageOut:
    """A message from its columns, in the order of ``MESSAGE_SQL_COLUMNS`` (messages/service.py), so that a
    page of records can be shaped by unpacking each one rather than by reading its columns by name."""
    deleted = deleted_at is not None
    return MessageOut(
        id=id,
        chat_id=chat_id,
        seq=seq,
        sender_id=sender_id,
        content="" if deleted else content,
        files=[],
        reply_to=reply_to,
        idempotency_key=idempotency_key,
        created_at=iso(created_at) or "",
        edited_at=iso(edited_at),
        deleted=deleted,
        reply_count=reply_count,
    )


def message_out(row: Any) -> MessageOut:
    return message_of(
        row.id,
        row.chat_id,
        row.seq,
        row.sender_id,
        row.content,
        row.reply_to,
        row.idempotency_key,
        row.created_at,
        row.edited_at,
        row.deleted_at,
        row.reply_count,
    )


def file_out(row: Any) -> FileOut:
    url = f"/api/files/{row.id}"
    return FileOut(
        id=row.id,
        filename=row.filename,
        size=row.size,
        mime_type=row.mime_type,
        url=url,
        width=row.width,
        height=row.height,
        thumbnail_url=f"{url}/thumbnail" if row.thumbnail_sha256 else None,
    )


def to_builtins(value: Any) -> Any:
    """For event payloads: the same JSON a client gets from the REST API."""
    return msgspec.to_builtins(value)


class MessageEditOut(msgspec.Struct):
    """A previous version of a message: its text and when an edit replaced it."""

    content: str
    edited_at: str


def message_edit_out(row: Any) -> MessageEditOut:
    return MessageEditOut(content=row.previous_content, edited_at=iso(row.edited_at) or "")


class SearchHitOut(msgspec.Struct):
    """One search result: the message as GET /messages shows it, and an HTML-safe snippet whose only
    markup is ``<mark>``…``</mark>`` around the matches."""

    message: MessageOut
    highlight: str
