from __future__ import annotations

from typing import Annotated

import msgspec

IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]

# The 1-4000 rule (API.md) applies after trimming and is checked in the service; this cap only bounds what
# the decoder accepts, leaving room for surrounding whitespace.
RawContent = Annotated[str, msgspec.Meta(max_length=16000)]


class SendMessageRequest(msgspec.Struct, forbid_unknown_fields=True):
    content: RawContent = ""
    # The configured per-message limit (files.per_message_max) is checked in the service; this cap only
    # bounds what the decoder accepts.
    files: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=2**62)]], msgspec.Meta(max_length=1000)] = (
        msgspec.field(default_factory=list)
    )
    reply_to: Annotated[int, msgspec.Meta(ge=1, le=2**62)] | None = None
    idempotency_key: IdempotencyKey | None = None


class EditMessageRequest(msgspec.Struct, forbid_unknown_fields=True):
    # Required: an edit never carries files, so empty content is never allowed.
    content: RawContent
