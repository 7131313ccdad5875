"""Domain events: one versioned envelope, one subject per kind, JSON on the wire.

Producers write an event into the outbox in the same transaction as the change; the outbox publisher puts
it on JetStream with ``Nats-Msg-Id = id`` so a republish after a crash is dropped as a duplicate.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

SCHEMA_VERSION: Final = 1

# Subjects of the domain stream. The kind names follow the original's public vocabulary.
MESSAGE_CREATED: Final = "fechatter.message.created"
MESSAGE_UPDATED: Final = "fechatter.message.updated"
MESSAGE_DELETED: Final = "fechatter.message.deleted"
MESSAGE_READ: Final = "fechatter.message.read"
MESSAGE_REACTION_ADDED: Final = "fechatter.message.reaction_added"
MESSAGE_REACTION_REMOVED: Final = "fechatter.message.reaction_removed"
MESSAGE_PINNED: Final = "fechatter.message.pinned"
MESSAGE_UNPINNED: Final = "fechatter.message.unpinned"
CHAT_CREATED: Final = "fechatter.chat.created"
CHAT_UPDATED: Final = "fechatter.chat.updated"
CHAT_MEMBER_ADDED: Final = "fechatter.chat.member_added"
CHAT_MEMBER_REMOVED: Final = "fechatter.chat.member_removed"
CHAT_MEMBER_UPDATED: Final = "fechatter.chat.member_updated"
WORKSPACE_MEMBER_REMOVED: Final = "fechatter.workspace.member_removed"
USER_PRESENCE: Final = "fechatter.user.presence"
CHAT_TYPING: Final = "fechatter.chat.typing"
FILE_UPLOADED: Final = "fechatter.file.uploaded"

DOMAIN_SUBJECTS: Final = ["fechatter.>"]
# Per-user log that SSE resumes from; kept outside "fechatter.>" because stream subjects may not overlap.
USER_LOG_PREFIX: Final = "notify.user"


def user_log_subject(user_id: int) -> str:
    return f"{USER_LOG_PREFIX}.{user_id}"


class Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    type: str  # the subject without the "fechatter." prefix, e.g. "message.created"
    occurred_at: str
    workspace_id: int
    actor_id: int | None = None
    chat_id: int | None = None
    data: dict[str, Any]
    v: int = SCHEMA_VERSION

    @property
    def subject(self) -> str:
        return "fechatter." + self.type


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def new_event(
    subject: str,
    *,
    workspace_id: int,
    data: dict[str, Any],
    actor_id: int | None = None,
    chat_id: int | None = None,
) -> Event:
    assert subject.startswith("fechatter.")
    return Event(
        id=str(uuid.uuid4()),
        type=subject.removeprefix("fechatter."),
        occurred_at=now_iso(),
        workspace_id=workspace_id,
        actor_id=actor_id,
        chat_id=chat_id,
        data=data,
    )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(raw: bytes) -> Event:
    return _decoder.decode(raw)
