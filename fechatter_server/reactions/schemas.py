from __future__ import annotations

from typing import Annotated

import msgspec

# The decoder only bounds the size; emoji.py decides what an emoji is (with the field named).
RawEmoji = Annotated[str, msgspec.Meta(max_length=256)]


class ReactionRequest(msgspec.Struct, forbid_unknown_fields=True):
    emoji: RawEmoji
