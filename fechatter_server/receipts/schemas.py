from __future__ import annotations

import msgspec


class ReaderOut(msgspec.Struct):
    user_id: int
    last_read_seq: int


class ReceiptsOut(msgspec.Struct):
    message_id: int
    read_by: list[ReaderOut]
    unread_by: list[int]
