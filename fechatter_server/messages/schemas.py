from __future__ import annotations

from typing import Annotated

import msgspec

IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class SendMessageRequest(msgspec.Struct, forbid_unknown_fields=True):
    # Length is checked after trimming in the service (API.md: 1-4000 characters after trimming).
    content: Annotated[str, msgspec.Meta(max_length=16000)] = ""
    files: Annotated[list[Annotated[int, msgspec.Meta(ge=1)]], msgspec.Meta(max_length=10)] = msgspec.field(
        default_factory=list
    )
    reply_to: Annotated[int, msgspec.Meta(ge=1, le=2**62)] | None = None
    idempotency_key: IdempotencyKey | None = None
