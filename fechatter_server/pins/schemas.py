from __future__ import annotations

import msgspec

from fechatter_server.views import MessageOut


class PinOut(msgspec.Struct):
    chat_id: int
    message: MessageOut
    pinned_by: int
    pinned_at: str
