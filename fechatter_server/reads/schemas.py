from __future__ import annotations

from typing import Annotated

import msgspec

# Read positions are seqs: the same bounds as the paging cursors of the messages API.
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**62)]


class ReadRequest(msgspec.Struct, forbid_unknown_fields=True):
    seq: Seq


class UnreadCountOut(msgspec.Struct):
    chat_id: int
    unread_count: int
