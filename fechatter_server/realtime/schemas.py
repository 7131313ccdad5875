from __future__ import annotations

from typing import Literal

import msgspec


class SetPresenceRequest(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["online", "away"]


class PresenceOut(msgspec.Struct):
    user_id: int
    status: Literal["online", "away", "offline"]


class OnlineUserOut(msgspec.Struct):
    user_id: int
    fullname: str
    status: Literal["online", "away"]
