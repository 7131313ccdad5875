from __future__ import annotations

import msgspec

from fechatter_server.views import MessageOut


class MentionOut(msgspec.Struct):
    chat_id: int
    message: MessageOut
    mention_type: str  # "user" | "everyone" | "here"
