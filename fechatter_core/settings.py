"""Typed settings for every service, validated from the YAML files in ``fixtures/``.

Each service has one top-level Struct; shared sections are reused so that one rule (say, how Redis is
reached) is written once. ``forbid_unknown_fields`` turns a typo in a YAML key into a start-up error.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

import msgspec


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerSettings(_Section, kw_only=True):
    host: str = "127.0.0.1"
    port: int
    workers: int = 1
    # The event loop Granian runs the app on: uvloop (libuv), whose socket work costs less (15-35% less CPU
    # per chat API request, measured), or the standard asyncio loop.
    loop: Literal["asyncio", "uvloop"] = "uvloop"
    # Connections one worker serves at once (Granian's backpressure); more wait unanswered in the listen
    # backlog. Every open SSE stream holds one, at notify and at the gateway, so those two need many.
    max_connections: int = 1024


class DatabaseSettings(_Section, kw_only=True):
    url: str
    pool_size: int = 10
    max_overflow: int = 10
    # The longest a statement (PostgreSQL's statement_timeout), a new connection or the wait for a pooled one
    # may take; a server that does not answer at all is given up on a second later (db/engine.py). A
    # database in trouble then costs a request this long and a 503, not the gateway's 504 after 30 s.
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0


class NatsSettings(_Section, kw_only=True):
    url: str
    stream: str = "FECHATTER_EVENTS"
    user_stream: str = "FECHATTER_USER_EVENTS"


class RedisSettings(_Section, kw_only=True):
    url: str
    password: str = ""


class AuthSettings(_Section, kw_only=True):
    # Short secrets make HS256 tokens guessable; refuse them at start-up.
    jwt_secret: Annotated[str, msgspec.Meta(min_length=16)]
    issuer: str = "fechatter-server"
    audience: str = "fechatter-web"
    access_ttl_seconds: int = 900
    refresh_ttl_seconds: int = 30 * 24 * 3600
    # A rotated refresh token presented again within this window is refused without ending the family
    # (two tabs refreshing at once); later, it revokes every token of the family.
    refresh_reuse_grace_seconds: float = 10.0


class LogSettings(_Section, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"


class LimitSettings(_Section, kw_only=True):
    message_max_chars: int = 4000
    page_default: int = 50
    page_max: int = 200
    body_max_bytes: int = 1024 * 1024
    upload_max_bytes: int = 10 * 1024 * 1024
    chat_name_max_chars: int = 128
    chat_members_max: int = 1000
    invite_ttl_hours: int = 7 * 24
    # Sign-in: every attempt counts per client IP; failed ones count per account (a correct password is
    # refused too while the account is over its limit, or the limit would protect nothing).
    signin_per_ip: int = 30
    signin_per_ip_window_seconds: int = 60
    signin_failures_per_account: int = 10
    signin_failures_window_seconds: int = 900
    # Distinct emoji on one message, pinned messages in one chat, and the largest chat that answers read
    # receipts (each receipt lists every member).
    reactions_per_message_max: int = 50
    pins_per_chat_max: int = 100
    receipts_members_max: int = 50


class SearchSettings(_Section, kw_only=True):
    engine: Literal["postgres", "meilisearch"] = "postgres"
    meili_url: str = ""
    meili_master_key: str = ""
    meili_index: str = "messages"
    meili_timeout_seconds: float = 5.0
    # Caps on what one query may ask for (longer or larger queries are a 400 validation_error on ``q``).
    query_max_chars: int = 512
    query_max_terms: int = 16
    query_max_filters: int = 8
    limit_default: int = 20
    limit_max: int = 100
    offset_max: int = 1000
    # Characters of context kept on each side of the first match in ``highlight``.
    snippet_context_chars: int = 80
    # PostgreSQL engine: only this many newest matches are ranked (whole-word and substring-only matches
    # together), so a very common word stays cheap.
    rank_window: int = 300


class StorageSettings(_Section, kw_only=True):
    path: str


class FileSettings(_Section, kw_only=True):
    """Uploads (the size limit is ``limits.upload_max_bytes``). Types are detected from the content."""

    # Empty: every type not denied. Entries are MIME types, or "image/*" for a whole family.
    allowed_types: list[str] = msgspec.field(default_factory=list)
    # Types a browser would run or render as a page; refused even when allowed_types names them.
    denied_types: list[str] = msgspec.field(
        default_factory=lambda: [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "application/x-msdownload",
            "application/x-executable",
            "application/x-mach-binary",
        ]
    )
    filename_max_chars: int = 255
    # Multipart framing (boundaries, part headers, small text fields) allowed on top of the file itself.
    multipart_overhead_bytes: int = 16 * 1024
    per_message_max: int = 10
    thumbnail_px: int = 320
    # Images with more pixels than this are refused (decompression bombs); Pillow's own default.
    max_image_pixels: int = 89_478_485


class OutboxSettings(_Section, kw_only=True):
    # A row older than this that is still unpublished is picked up by the relay sweep.
    relay_interval_seconds: float = 1.0
    batch_size: int = 500


class RealtimeSettings(_Section, kw_only=True):
    # Typing lapses this long after the last accepted call; calls closer together than the throttle
    # cost one Redis GET and announce nothing.
    typing_lapse_seconds: float = 6.0
    typing_throttle_seconds: float = 2.0
    # A declared "away" lasts this long unless renewed (or until the user goes offline).
    away_ttl_seconds: int = 3600


class FechatterSettings(_Section, kw_only=True):
    server: ServerSettings
    database: DatabaseSettings
    nats: NatsSettings
    redis: RedisSettings
    auth: AuthSettings
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    search: SearchSettings = msgspec.field(default_factory=SearchSettings)
    storage: StorageSettings
    files: FileSettings = msgspec.field(default_factory=FileSettings)
    outbox: OutboxSettings = msgspec.field(default_factory=OutboxSettings)
    realtime: RealtimeSettings = msgspec.field(default_factory=RealtimeSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)


class SseSettings(_Section, kw_only=True):
    ping_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    retry_ms: int = 3000
    # Events buffered per connection before a slow client is disconnected (it then resumes by id).
    buffer_size: Annotated[int, msgspec.Meta(gt=0)] = 1000
    # A write still blocked after this long (the client's socket full, not drained) ends the stream too: a
    # client that stopped reading while few events came is cut off even though its buffer never filled.
    write_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    retention_hours: int = 48
    retention_per_user: int = 20000
    # Presence: each connection is refreshed in Redis every heartbeat and counts for ttl (a process that
    # dies stops refreshing, and its users go offline when the ttl lapses).
    presence_heartbeat_seconds: float = 10.0
    presence_ttl_seconds: float = 30.0
    # How often each process claims lapsed typing and presence entries (each is announced once).
    sweep_interval_seconds: float = 0.5


class NotifySettings(_Section, kw_only=True):
    server: ServerSettings
    database: DatabaseSettings
    nats: NatsSettings
    redis: RedisSettings
    auth: AuthSettings
    sse: SseSettings = msgspec.field(default_factory=SseSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)


class LlmSettings(_Section, kw_only=True):
    base_url: str = "https://api.openai.com/v1"
    api_key: str = ""
    default_model: str = "gpt-4o-mini"
    high_precision_model: str = "gpt-4o"
    embedding_model: str = "text-embedding-3-small"
    timeout_seconds: float = 30.0


class BotSettings(_Section, kw_only=True):
    server: ServerSettings
    database: DatabaseSettings
    nats: NatsSettings
    auth: AuthSettings
    llm: LlmSettings = msgspec.field(default_factory=LlmSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)


class ClickHouseSettings(_Section, kw_only=True):
    # chdb runs the ClickHouse engine inside analytics_server; "server" talks to clickhouse-server over HTTP.
    engine: Literal["chdb", "server"] = "chdb"
    path: str = "./data/clickhouse"
    url: str = ""
    database: str = "fechatter_analytics"


class AnalyticsSettings(_Section, kw_only=True):
    server: ServerSettings
    nats: NatsSettings
    auth: AuthSettings
    clickhouse: ClickHouseSettings = msgspec.field(default_factory=ClickHouseSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)


class UpstreamSettings(_Section, kw_only=True):
    servers: list[str]
    health_path: str = "/health"


class RouteSettings(_Section, kw_only=True):
    # Longest prefix wins; "exact" routes match only the path itself.
    path: str
    upstream: str
    exact: bool = False
    # Long-lived streams (SSE): no read timeout once the response has started.
    stream: bool = False


class CorsSettings(_Section, kw_only=True):
    allow_origins: list[str] = msgspec.field(default_factory=list)


class RateRule(_Section, kw_only=True):
    # Counted exactly in Redis's Lua (numbers are doubles there): at most 2^53.
    limit: Annotated[int, msgspec.Meta(ge=1, le=2**53)]
    window_seconds: Annotated[int, msgspec.Meta(ge=1)]


class RateLimitSettings(_Section, kw_only=True):
    enabled: bool = True
    # The share of a limit the gateway takes ahead from Redis at once, to count the next requests without
    # asking it (gateway/windows.py); 0 counts every request in Redis before answering it.
    lease_fraction: Annotated[float, msgspec.Meta(ge=0, le=0.5)] = 0.1
    # Every proxied request, per client address.
    per_ip: RateRule = msgspec.field(default_factory=lambda: RateRule(limit=1200, window_seconds=60))
    # Sign-in, sign-up and refresh, per client address (the chat API also limits sign-in per account).
    auth: RateRule = msgspec.field(default_factory=lambda: RateRule(limit=20, window_seconds=60))
    # Message sends, per user and chat.
    send: RateRule = msgspec.field(default_factory=lambda: RateRule(limit=30, window_seconds=10))
    # File uploads, per user.
    upload: RateRule = msgspec.field(default_factory=lambda: RateRule(limit=30, window_seconds=60))
    # Everything else, per user (per address without a valid token).
    read: RateRule = msgspec.field(default_factory=lambda: RateRule(limit=600, window_seconds=60))


class BodyLimitSettings(_Section, kw_only=True):
    # Refused with 413 before anything is sent upstream (Content-Length or counted while streaming).
    default_bytes: int = 1024 * 1024
    # POST /api/files: the chat API's upload limit plus room for the multipart framing.
    upload_bytes: int = 10 * 1024 * 1024 + 64 * 1024


class HealthCheckSettings(_Section, kw_only=True):
    # Active health checks of every upstream instance (GET its health_path) by the gateway.
    enabled: bool = True
    interval_seconds: float = 5.0
    timeout_seconds: float = 2.0
    # Probes failed in a row that take an instance out of rotation, and passed in a row that put it back.
    unhealthy_after: int = 2
    healthy_after: int = 1

    def __post_init__(self) -> None:
        if self.interval_seconds <= 0 or self.timeout_seconds <= 0:
            raise ValueError("interval_seconds and timeout_seconds must be positive")
        if self.unhealthy_after < 1 or self.healthy_after < 1:
            raise ValueError("unhealthy_after and healthy_after must be at least 1")


class UpstreamPoolSettings(_Section, kw_only=True):
    # Connections the gateway keeps open to one upstream instance at once, stream routes (SSE) apart.
    max_connections: int = 128
    # How long a request beyond the cap waits for a free connection before 503 unavailable (Retry-After).
    wait_seconds: float = 5.0
    # Requests waiting for one instance at once; one more is answered 503 at once.
    max_waiting: int = 1024

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_waiting < 0:
            raise ValueError("max_connections must be at least 1 and max_waiting at least 0")
        if self.wait_seconds <= 0:
            raise ValueError("wait_seconds must be positive")


class TlsSettings(_Section, kw_only=True):
    cert: str = ""
    key: str = ""


class SecurityHeaderSettings(_Section, kw_only=True):
    content_security_policy: str = (
        "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
        "style-src 'self' 'unsafe-inline'; script-src 'self'; font-src 'self' data:; "
        "object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
    )
    # The API reference page at /api/docs loads its renderer from a CDN.
    docs_content_security_policy: str = (
        "default-src 'self'; img-src 'self' data: blob: https:; connect-src 'self'; "
        "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
        "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; font-src 'self' data: https:; "
        "frame-ancestors 'none'"
    )
    referrer_policy: str = "strict-origin-when-cross-origin"
    hsts_max_age_seconds: int = 31536000


class GatewaySettings(_Section, kw_only=True):
    server: ServerSettings
    auth: AuthSettings
    upstreams: dict[str, UpstreamSettings]
    routes: list[RouteSettings]
    cors: CorsSettings = msgspec.field(default_factory=CorsSettings)
    frontend_dir: str = "fechatter_frontend/dist"
    upstream_timeout_seconds: float = 30.0
    upstream_connect_timeout_seconds: float = 2.0
    # A replica that refused a connection is skipped for this long.
    upstream_down_seconds: float = 5.0
    upstream_pool: UpstreamPoolSettings = msgspec.field(default_factory=UpstreamPoolSettings)
    health_checks: HealthCheckSettings = msgspec.field(default_factory=HealthCheckSettings)
    # Addresses or CIDR blocks (entries may hold several, comma-separated) of proxies in front of the
    # gateway: only a request from one of them has its client address taken from X-Forwarded-For.
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    redis: RedisSettings | None = None
    rate_limits: RateLimitSettings = msgspec.field(default_factory=RateLimitSettings)
    body_limits: BodyLimitSettings = msgspec.field(default_factory=BodyLimitSettings)
    security_headers: SecurityHeaderSettings = msgspec.field(default_factory=SecurityHeaderSettings)
    tls: TlsSettings = msgspec.field(default_factory=TlsSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)

    def __post_init__(self) -> None:
        for entry in self.trusted_proxies:
            for item in (part.strip() for part in entry.split(",")):
                if not item:
                    continue
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"trusted_proxies: {item!r} is not an address or CIDR block") from None
