"""SSE frames: what one event looks like on the wire, built once per event and shared by every connection
that receives it (a user with ten tabs, a workspace of a thousand members for presence)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

_decode_entry = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event ready to write. ``seq`` is the user-log sequence (the SSE id), None for an ephemeral event
    (typing, presence), which is not in the log and must not move the client's Last-Event-ID."""

    body: bytes
    event: str | None = None  # counted as delivered when set
    seq: int | None = None
    workspace_id: int | None = None  # the log entry's workspace; a stream shows only its token's
    created: float | None = None  # event creation time, for the latency histogram


def sse_frame(seq: int | None, event: str, data: bytes) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + data + b"\n\n"


def ephemeral(event: str, data: Any) -> Outgoing:
    return Outgoing(sse_frame(None, event, _encode(data)), event="ephemeral")


def log_entry(seq: int, raw: bytes) -> Outgoing:
    """The frame of a user-log entry (see ``notify_server.fanout.UserLogEntry``)."""
    entry = _decode_entry(raw)
    event = entry.get("event", "message")
    created = None
    occurred = entry.get("occurred_at")
    if isinstance(occurred, str):
        with contextlib.suppress(ValueError):
            created = datetime.fromisoformat(occurred.replace("Z", "+00:00")).timestamp()
    workspace_id = entry.get("workspace_id")
    return Outgoing(
        sse_frame(seq, event, _encode(entry.get("data", {}))),
        event=event,
        seq=seq,
        workspace_id=workspace_id if isinstance(workspace_id, int) else None,
        created=created,
    )
