"""SQLAlchemy Core tables: the shape of the data as the code sees it.

The database itself is built by the Alembic revisions in ``migrations/``; a test checks that a migrated
database matches these tables, so the two cannot drift.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TSVECTOR, UUID

metadata = sa.MetaData()

_now = sa.text("now()")


def _ts(name: str, *, nullable: bool = False, default: bool = True) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=_now if default else None
    )


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("fullname", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=True),  # NULL for bot users: they cannot sign in
    sa.Column("is_bot", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column(
        "default_workspace_id",
        sa.BigInteger,
        sa.ForeignKey(
            "workspaces.id", ondelete="SET NULL", name="users_default_workspace_fkey", use_alter=True
        ),
        nullable=True,
    ),
    _ts("created_at"),
    sa.CheckConstraint("char_length(fullname) BETWEEN 1 AND 64", name="users_fullname_length"),
)
sa.Index("users_email_lower_key", sa.func.lower(users.c.email), unique=True)

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("owner_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("bot_user_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=True),
    _ts("created_at"),
)

workspace_members = sa.Table(
    "workspace_members",
    metadata,
    sa.Column(
        "workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.Text, nullable=False, server_default="member"),
    _ts("joined_at"),
    sa.CheckConstraint("role IN ('owner', 'admin', 'member')", name="workspace_members_role"),
)
sa.Index("workspace_members_user_idx", workspace_members.c.user_id)

# Who was removed from (or left) a workspace, so their past messages keep a name (migration 0007). A row
# goes when the person joins again.
workspace_former_members = sa.Table(
    "workspace_former_members",
    metadata,
    sa.Column(
        "workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    # None: they left by themselves (or the remover's account is gone).
    sa.Column("removed_by", sa.BigInteger, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    _ts("left_at"),
)

workspace_invites = sa.Table(
    "workspace_invites",
    metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column(
        "workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("created_by", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("max_uses", sa.Integer, nullable=True),
    sa.Column("uses", sa.Integer, nullable=False, server_default="0"),
    _ts("created_at"),
)

chats = sa.Table(
    "chats",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column(
        "workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("chat_type", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("owner_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
    # "min_user_id:max_user_id" for Single chats, so one pair has one direct chat per workspace.
    sa.Column("direct_key", sa.Text, nullable=True),
    # The per-chat sequence: incremented under the chat row lock by each send, so seq is gap-free.
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True),
    _ts("created_at"),
    sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(
        "chat_type IN ('Single', 'Group', 'PrivateChannel', 'PublicChannel')", name="chats_chat_type"
    ),
)
sa.Index(
    "chats_direct_key",
    chats.c.workspace_id,
    chats.c.direct_key,
    unique=True,
    postgresql_where=chats.c.direct_key.isnot(None),
)
sa.Index("chats_workspace_idx", chats.c.workspace_id)

chat_members = sa.Table(
    "chat_members",
    metadata,
    sa.Column("chat_id", sa.BigInteger, sa.ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.Text, nullable=False, server_default="member"),
    sa.Column("last_read_seq", sa.BigInteger, nullable=False, server_default="0"),
    _ts("joined_at"),
    sa.CheckConstraint("role IN ('owner', 'admin', 'member')", name="chat_members_role"),
    sa.CheckConstraint("last_read_seq >= 0", name="chat_members_last_read_seq"),
)
sa.Index("chat_members_user_idx", chat_members.c.user_id)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("chat_id", sa.BigInteger, sa.ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("sender_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("reply_to", sa.BigInteger, sa.ForeignKey("messages.id", ondelete="SET NULL"), nullable=True),
    sa.Column("idempotency_key", sa.Text, nullable=True),
    _ts("created_at"),
    sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    # Migration 0005: the English text vector plus CJK character pairs, stored so search checks are cheap.
    sa.Column(
        "search_tsv",
        TSVECTOR,
        sa.Computed(
            "to_tsvector('english'::regconfig, content)"
            " || to_tsvector('simple'::regconfig, fechatter_cjk_bigrams(content))",
            persisted=True,
        ),
    ),
    # Migration 0008: every pair of adjacent words as one token (``release_build``), so that a quoted phrase
    # is one index lookup instead of the intersection of its words' lists, long for common words.
    sa.Column("search_pairs", TSVECTOR, sa.Computed("fechatter_word_pairs(content)", persisted=True)),
    # Migration 0006: false only when the message has no such row, so decorating a message skips the lookups
    # that would find nothing. Kept by AFTER INSERT triggers on the three tables and never cleared; a
    # decoration row is never moved to another message (no trigger watches updates of message_id).
    sa.Column("has_files", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("has_reactions", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("has_mentions", sa.Boolean, nullable=False, server_default=sa.false()),
    # Migration 0009: how many replies (reply_to this message) are not deleted, kept by triggers on messages.
    sa.Column("reply_count", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.UniqueConstraint("chat_id", "seq", name="messages_chat_seq_key"),
    sa.UniqueConstraint("chat_id", "sender_id", "idempotency_key", name="messages_idempotency_key"),
)
sa.Index("messages_sender_idx", messages.c.sender_id)
sa.Index("messages_reply_to_idx", messages.c.reply_to, postgresql_where=messages.c.reply_to.isnot(None))
# Search (migrations 0004, 0005): trigrams serve ILIKE '%text%' (words, prefixes, substrings, CJK of three
# characters or more); the stored vector serves stemmed words and two-character CJK words.
sa.Index(
    "messages_content_trgm_idx",
    messages.c.content,
    postgresql_using="gin",
    postgresql_ops={"content": "gin_trgm_ops"},
)
sa.Index("messages_search_tsv_idx", messages.c.search_tsv, postgresql_using="gin")
sa.Index("messages_search_pairs_idx", messages.c.search_pairs, postgresql_using="gin")
# What reads of messages select: every column but the search vectors, which only search conditions use, and
# the decoration flags, which only the decoration reads (fechatter_server/messages/decorate.py).
MESSAGE_COLUMNS = tuple(
    c
    for c in messages.c
    if c.name not in ("search_tsv", "search_pairs", "has_files", "has_reactions", "has_mentions")
)

message_edits = sa.Table(
    "message_edits",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("message_id", sa.BigInteger, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    sa.Column("previous_content", sa.Text, nullable=False),
    _ts("edited_at"),
)
sa.Index("message_edits_message_idx", message_edits.c.message_id, message_edits.c.id)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    # Every token descended from one sign-in shares a family; replaying a rotated token revokes the family.
    sa.Column("family_id", UUID(as_uuid=True), nullable=False),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    _ts("created_at"),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("user_agent", sa.Text, nullable=True),
)
sa.Index("refresh_tokens_family_idx", refresh_tokens.c.family_id)
sa.Index("refresh_tokens_user_idx", refresh_tokens.c.user_id)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),  # the encoded event, published as is
    _ts("created_at"),
)


def _fk(table: str) -> sa.ForeignKey:
    return sa.ForeignKey(f"{table}.id", ondelete="CASCADE")


message_reactions = sa.Table(
    "message_reactions",
    metadata,
    sa.Column("message_id", sa.BigInteger, _fk("messages"), primary_key=True),
    sa.Column("user_id", sa.BigInteger, _fk("users"), primary_key=True),
    sa.Column("emoji", sa.Text, primary_key=True),
    _ts("created_at"),
    sa.CheckConstraint("char_length(emoji) BETWEEN 1 AND 64", name="message_reactions_emoji_length"),
)

message_pins = sa.Table(
    "message_pins",
    metadata,
    sa.Column("message_id", sa.BigInteger, _fk("messages"), primary_key=True),
    sa.Column("chat_id", sa.BigInteger, _fk("chats"), nullable=False),
    sa.Column("pinned_by", sa.BigInteger, _fk("users"), nullable=False),
    _ts("pinned_at"),
)
sa.Index("message_pins_chat_idx", message_pins.c.chat_id, message_pins.c.pinned_at)

# One row per (message, mentioned member). ``seq`` is the message's, copied so that "mentions after my read
# position" is one index range per chat.
message_mentions = sa.Table(
    "message_mentions",
    metadata,
    sa.Column("message_id", sa.BigInteger, _fk("messages"), primary_key=True),
    sa.Column("user_id", sa.BigInteger, _fk("users"), primary_key=True),
    sa.Column("chat_id", sa.BigInteger, _fk("chats"), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("mention_type", sa.Text, nullable=False, server_default="user"),
    sa.CheckConstraint("mention_type IN ('user', 'everyone', 'here')", name="message_mentions_type"),
)
sa.Index(
    "message_mentions_user_idx",
    message_mentions.c.user_id,
    message_mentions.c.chat_id,
    message_mentions.c.seq,
)

# An upload. The bytes live once per content hash under the data dir; each upload still gets its own row,
# because who may download it depends on who uploaded it and where it was sent.
files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("workspace_id", sa.BigInteger, _fk("workspaces"), nullable=False),
    sa.Column("uploader_id", sa.BigInteger, _fk("users"), nullable=False),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mime_type", sa.Text, nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("width", sa.Integer, nullable=True),
    sa.Column("height", sa.Integer, nullable=True),
    sa.Column("thumbnail_sha256", sa.Text, nullable=True),
    _ts("created_at"),
    sa.CheckConstraint("size >= 0", name="files_size"),
)
sa.Index("files_uploader_idx", files.c.uploader_id)
sa.Index("files_sha256_idx", files.c.sha256)

message_files = sa.Table(
    "message_files",
    metadata,
    sa.Column("message_id", sa.BigInteger, _fk("messages"), primary_key=True),
    sa.Column("file_id", sa.BigInteger, _fk("files"), primary_key=True),
    sa.Column("position", sa.SmallInteger, nullable=False, server_default="0"),
)
sa.Index("message_files_file_idx", message_files.c.file_id)
