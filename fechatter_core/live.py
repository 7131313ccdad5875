"""Ephemeral realtime state: typing and presence, kept in Redis, announced over core NATS.

Typing and presence say what is true *now*; a client that reconnects wants the current state, not a replay
of who typed an hour ago. So these events skip the retained per-user log: they go over core NATS on
``live.ws.<workspace_id>`` (at most once, no SSE ``id:``), and every notify process forwards them to its own
connections. Every transition is decided by one Lua script run atomically in Redis, so with any number of
chat API and notify processes each ``typing_started``/``typing_stopped``/``user_presence`` is announced
exactly once: whoever's script call makes the change announces it.

Keys (all expire by themselves):

- ``typing:deadlines`` sorted set of ``<ws>:<chat>:<user>`` scored by the lapse time (ms, Redis clock);
  ``typing:payload`` hash of the same members -> the recipients to tell when it stops;
  ``typing:throttle:<ws>:<chat>:<user>`` set by an accepted call, so keystrokes within it cost one GET.
- ``presence:conns:<ws>:<user>`` sorted set of connection ids scored by their expiry (ms);
  ``presence:expiry`` sorted set of ``<ws>:<user>`` scored by the latest connection expiry (the sweep);
  ``presence:status:<ws>`` hash user -> last announced status (absent = offline);
  ``presence:away:<ws>:<user>`` the user said they are away (cleared when they go offline).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient

from fechatter_core.events import now_iso
from fechatter_core.pipelined_redis import RedisClient

log = logging.getLogger(__name__)

LIVE_PREFIX: Final = "live.ws"
PresenceStatus = Literal["online", "away", "offline"]


def live_subject(workspace_id: int) -> str:
    return f"{LIVE_PREFIX}.{workspace_id}"


class LiveEvent(msgspec.Struct, omit_defaults=True):
    """An ephemeral event for the connections of ``workspace_id``: only ``recipients`` when given."""

    event: str
    data: dict[str, Any]
    workspace_id: int
    occurred_at: str
    recipients: list[int] | None = None


_encode = msgspec.json.Encoder().encode
decode_live = msgspec.json.Decoder(LiveEvent).decode


async def publish_live(
    nc: NatsClient, workspace_id: int, event: str, data: dict[str, Any], recipients: list[int] | None = None
) -> None:
    payload = LiveEvent(event, data, workspace_id, now_iso(), recipients)
    await nc.publish(live_subject(workspace_id), _encode(payload))


# -- typing ----------------------------------------------------------------------------------------------

TYPING_DEADLINES: Final = "typing:deadlines"
TYPING_PAYLOAD: Final = "typing:payload"


@dataclass(frozen=True, slots=True)
class TypingSettings:
    lapse_ms: int = 6000
    throttle_ms: int = 2000


def typing_member(workspace_id: int, chat_id: int, user_id: int) -> str:
    return f"{workspace_id}:{chat_id}:{user_id}"


def typing_throttle_key(workspace_id: int, chat_id: int, user_id: int) -> str:
    return f"typing:throttle:{typing_member(workspace_id, chat_id, user_id)}"


# KEYS: deadlines, payload, throttle. ARGV: member, payload, lapse_ms, throttle_ms.
# Returns 1 when the user was not typing before (the caller announces typing_started), else 0.
_TYPING_START = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Present even if lapsed and not yet swept: renewing it means no stop and no second start.
local existing = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
if existing then return 0 end
return 1
"""

# KEYS: deadlines, payload, throttle. ARGV: member. Returns the payload when this call ended the typing.
_TYPING_STOP = """
redis.call('DEL', KEYS[3])
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
local payload = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return payload or false
"""

# KEYS: deadlines, payload. ARGV: max. Claims up to max lapsed entries: {member, payload, ...}.
_TYPING_SWEEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local payload = redis.call('HGET', KEYS[2], member)
  redis.call('HDEL', KEYS[2], member)
  table.insert(out, member)
  table.insert(out, payload or '')
end
return out
"""


def _typing_data(member: str) -> tuple[int, dict[str, int]]:
    workspace_id, chat_id, user_id = (int(part) for part in member.split(":"))
    return workspace_id, {"chat_id": chat_id, "user_id": user_id}


async def typing_start(
    redis: aioredis.Redis,
    nc: NatsClient,
    settings: TypingSettings,
    *,
    workspace_id: int,
    chat_id: int,
    user_id: int,
    recipients: list[int],
) -> bool:
    """Mark the user typing in the chat until ``lapse_ms`` from now; announces ``typing_started`` when
    they were not typing. Returns whether it was announced."""
    member = typing_member(workspace_id, chat_id, user_id)
    fresh = await redis.eval(
        _TYPING_START,
        3,
        TYPING_DEADLINES,
        TYPING_PAYLOAD,
        typing_throttle_key(workspace_id, chat_id, user_id),
        member,
        json.dumps(recipients),
        settings.lapse_ms,
        settings.throttle_ms,
    )
    if int(fresh) == 1:
        await publish_live(
            nc, workspace_id, "typing_started", {"chat_id": chat_id, "user_id": user_id}, recipients
        )
        return True
    return False


async def typing_stop(
    redis: RedisClient, nc: NatsClient, *, workspace_id: int, chat_id: int, user_id: int
) -> bool:
    """End the user's typing in the chat now (they sent a message); announced once, by whoever ends it.
    Called on every send, so it goes over the pipelined connection."""
    member = typing_member(workspace_id, chat_id, user_id)
    payload = await redis.script(
        _TYPING_STOP,
        [TYPING_DEADLINES, TYPING_PAYLOAD, typing_throttle_key(workspace_id, chat_id, user_id)],
        [member],
    )
    if not payload:
        return False
    await publish_live(
        nc, workspace_id, "typing_stopped", {"chat_id": chat_id, "user_id": user_id}, json.loads(payload)
    )
    return True


async def typing_sweep(redis: aioredis.Redis, nc: NatsClient, *, batch: int = 500) -> int:
    """Announce ``typing_stopped`` for every typing that lapsed; each one is claimed by one caller only."""
    claimed = await redis.eval(_TYPING_SWEEP, 2, TYPING_DEADLINES, TYPING_PAYLOAD, batch)
    for i in range(0, len(claimed), 2):
        member = claimed[i].decode() if isinstance(claimed[i], bytes) else claimed[i]
        raw = claimed[i + 1]
        recipients = json.loads(raw) if raw else None
        workspace_id, data = _typing_data(member)
        await publish_live(nc, workspace_id, "typing_stopped", data, recipients)
    return len(claimed) // 2


# -- presence --------------------------------------------------------------------------------------------

PRESENCE_EXPIRY: Final = "presence:expiry"


def presence_keys(workspace_id: int, user_id: int) -> list[str]:
    return [
        f"presence:conns:{workspace_id}:{user_id}",
        PRESENCE_EXPIRY,
        f"presence:status:{workspace_id}",
        f"presence:away:{workspace_id}:{user_id}",
    ]


# Shared head of the presence scripts: the user's status after dropping lapsed connections.
_PRESENCE_LIB = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function settle(conns, expiry, status, away, member, user)
  redis.call('ZREMRANGEBYSCORE', conns, '-inf', now)
  local new = 'offline'
  local last = redis.call('ZRANGE', conns, -1, -1, 'WITHSCORES')
  if #last > 0 then
    redis.call('PEXPIREAT', conns, tonumber(last[2]))
    redis.call('ZADD', expiry, tonumber(last[2]), member)
    if redis.call('EXISTS', away) == 1 then new = 'away' else new = 'online' end
  else
    redis.call('ZREM', expiry, member)
    redis.call('DEL', away)
  end
  local old = redis.call('HGET', status, user) or 'offline'
  if old == new then return false end
  if new == 'offline' then redis.call('HDEL', status, user) else redis.call('HSET', status, user, new) end
  return new
end
"""

# KEYS: conns, expiry, status, away. ARGV: member, user, conn id, ttl_ms (0 = remove the connection).
_PRESENCE_TOUCH = (
    _PRESENCE_LIB
    + """
if tonumber(ARGV[4]) > 0 then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3])
else
  redis.call('ZREM', KEYS[1], ARGV[3])
end
return settle(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2])
"""
)

# KEYS: conns, expiry, status, away. ARGV: member, user, 'away' | 'online', away_ttl_ms.
_PRESENCE_SET = (
    _PRESENCE_LIB
    + """
if ARGV[3] == 'away' then
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
else
  redis.call('DEL', KEYS[4])
end
return settle(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2])
"""
)

# KEYS: expiry. ARGV: max. Users whose every connection lapsed (their notify process died): {ws:user, ...}.
# Each is settled here, inside the same script, so only one sweeper announces the change.
_PRESENCE_SWEEP = (
    _PRESENCE_LIB
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, member in ipairs(due) do
  local sep = string.find(member, ':')
  local ws = string.sub(member, 1, sep - 1)
  local user = string.sub(member, sep + 1)
  local changed = settle('presence:conns:' .. member, KEYS[1], 'presence:status:' .. ws,
                         'presence:away:' .. member, member, user)
  if changed then
    table.insert(out, member)
    table.insert(out, changed)
  end
end
return out
"""
)


async def _announce_presence(nc: NatsClient, workspace_id: int, user_id: int, status: Any) -> str | None:
    if not status:
        return None
    text = status.decode() if isinstance(status, bytes) else str(status)
    await publish_live(nc, workspace_id, "user_presence", {"user_id": user_id, "status": text})
    return text


async def presence_touch(
    redis: aioredis.Redis,
    nc: NatsClient,
    *,
    workspace_id: int,
    user_id: int,
    connection_id: str,
    ttl_ms: int,
) -> str | None:
    """Record (``ttl_ms`` > 0) or drop (0) one live connection of the user; announces a change of status
    and returns the new status, or None when nothing changed."""
    status = await redis.eval(
        _PRESENCE_TOUCH,
        4,
        *presence_keys(workspace_id, user_id),
        f"{workspace_id}:{user_id}",
        user_id,
        connection_id,
        ttl_ms,
    )
    return await _announce_presence(nc, workspace_id, user_id, status)


@dataclass(frozen=True, slots=True)
class LiveConnection:
    workspace_id: int
    user_id: int
    connection_id: str


async def presence_refresh(
    redis: aioredis.Redis, nc: NatsClient, connections: Sequence[LiveConnection], *, ttl_ms: int
) -> int:
    """``presence_touch`` for many connections in one round trip (a pipeline of the same script): a process
    holding ten thousand streams refreshes them all every heartbeat. Each script call stands alone: one that
    fails neither hides the changes the others made (they are announced) nor stops them. Returns how many
    failed."""
    pipe = redis.pipeline(transaction=False)
    for c in connections:
        pipe.eval(
            _PRESENCE_TOUCH,
            4,
            *presence_keys(c.workspace_id, c.user_id),
            f"{c.workspace_id}:{c.user_id}",
            c.user_id,
            c.connection_id,
            ttl_ms,
        )
    failed = 0
    for c, status in zip(connections, await pipe.execute(raise_on_error=False), strict=True):
        if isinstance(status, Exception):
            failed += 1
        else:
            await _announce_presence(nc, c.workspace_id, c.user_id, status)
    return failed


async def presence_set(
    redis: aioredis.Redis,
    nc: NatsClient,
    *,
    workspace_id: int,
    user_id: int,
    status: Literal["online", "away"],
    away_ttl_ms: int,
) -> str | None:
    """The user says they are away (or back). Only a connected user shows as away; offline stays offline."""
    changed = await redis.eval(
        _PRESENCE_SET,
        4,
        *presence_keys(workspace_id, user_id),
        f"{workspace_id}:{user_id}",
        user_id,
        status,
        away_ttl_ms,
    )
    return await _announce_presence(nc, workspace_id, user_id, changed)


async def presence_sweep(redis: aioredis.Redis, nc: NatsClient, *, batch: int = 500) -> int:
    changed = await redis.eval(_PRESENCE_SWEEP, 1, PRESENCE_EXPIRY, batch)
    for i in range(0, len(changed), 2):
        member = changed[i].decode() if isinstance(changed[i], bytes) else changed[i]
        workspace_id, user_id = (int(part) for part in member.split(":"))
        await _announce_presence(nc, workspace_id, user_id, changed[i + 1])
    return len(changed) // 2


async def presence_of(redis: aioredis.Redis, workspace_id: int, user_ids: list[int]) -> list[PresenceStatus]:
    """Current status of each user (absent from the status hash = offline)."""
    if not user_ids:
        return []
    values = await redis.hmget(f"presence:status:{workspace_id}", [str(u) for u in user_ids])
    out: list[PresenceStatus] = []
    for value in values:
        text = value.decode() if isinstance(value, bytes) else value
        out.append(text if text in ("online", "away") else "offline")
    return out
