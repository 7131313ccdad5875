"""One async engine per process, built from the service's database settings."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fechatter_core.settings import DatabaseSettings


def async_url(url: str) -> str:
    """Accept the usual ``postgresql://`` form in config and pick the asyncpg driver for it."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("database url must start with postgresql://")


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    limit = settings.timeout_seconds
    return create_async_engine(
        async_url(settings.url),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_pre_ping=False,
        pool_timeout=limit,
        connect_args={
            "server_settings": {
                "application_name": "fechatter",
                # The server ends a statement that runs too long (a lock it waits for, a bad plan) itself:
                # one abandoned by its client would otherwise run on, holding its locks.
                "statement_timeout": str(max(1, round(limit * 1000))),
            },
            "timeout": limit,  # to connect
            # A server that does not answer at all: given up on a little after the server's own limit.
            "command_timeout": limit + COMMAND_MARGIN_SECONDS,
        },
    )


# How much longer than statement_timeout the client waits for an answer before it gives up on the server.
COMMAND_MARGIN_SECONDS = 1.0
