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
    return create_async_engine(
        async_url(settings.url),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_pre_ping=False,
        pool_timeout=settings.timeout_seconds,
        connect_args={
            "server_settings": {"application_name": "fechatter"},
            "timeout": settings.timeout_seconds,  # to connect
            "command_timeout": settings.timeout_seconds,  # each statement, unless it says otherwise
        },
    )
