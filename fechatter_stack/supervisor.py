"""The all-in-one supervisor behind ``make run``: infrastructure from wheels, migrations, the five
services as separate processes, restarts with backoff, and a clean stop that leaves no listener behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from fechatter_core.serve import port_in_use
from fechatter_stack import infra

log = logging.getLogger("fechatter_stack")

REPO_ROOT = Path(__file__).resolve().parents[1]

# name -> (python module, port env var, default port). Start order is this order; the gateway last.
SERVICES: dict[str, tuple[str, str, int]] = {
    "fechatter_server": ("fechatter_server", "FECHATTER_PORT", 6688),
    "notify_server": ("notify_server", "NOTIFY_PORT", 6687),
    "bot_server": ("bot_server", "BOT_PORT", 6686),
    "analytics_server": ("analytics_server", "ANALYTICS_PORT", 6690),
    "gateway": ("gateway", "GATEWAY_PORT", 8080),
}
# Embedded infrastructure listens on ports unlikely to clash with a system PostgreSQL/NATS/Redis.
INFRA_PORTS: dict[str, tuple[str, int]] = {
    "postgres": ("PG_PORT", 15432),
    "nats": ("NATS_PORT", 14222),
    "redis": ("REDIS_PORT", 16379),
}
UPSTREAM_VARS = {
    "fechatter_server": "FECHATTER_UPSTREAM",
    "notify_server": "NOTIFY_UPSTREAM",
    "bot_server": "BOT_UPSTREAM",
    "analytics_server": "ANALYTICS_UPSTREAM",
}

DEV_ENV_FILE = "dev.env"
# Services that may run as several instances behind the gateway (`--replicas chat=2,notify=2`).
REPLICABLE = {"chat": "fechatter_server", "notify": "notify_server"}

MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0  # a child that ran this long gets its backoff reset


class StackError(Exception):
    pass


def parse_replicas(text: str) -> dict[str, int]:
    """``chat=2,notify=2`` (service names work too) -> ``{"fechatter_server": 2, "notify_server": 2}``."""
    replicas: dict[str, int] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, _, count = item.partition("=")
        name = REPLICABLE.get(name.strip(), name.strip())
        if name not in REPLICABLE.values():
            choices = ", ".join(sorted(REPLICABLE))
            raise StackError(f"replicas: {name!r} cannot be replicated (choose from {choices})")
        try:
            number = int(count)
        except ValueError:
            raise StackError(f"replicas: {item.strip()!r} needs a count, e.g. chat=2") from None
        if not 1 <= number <= 16:
            raise StackError(f"replicas: {item.strip()!r}: the count must be between 1 and 16")
        replicas[name] = number
    return replicas


def instance_name(service: str, index: int) -> str:
    return service if index == 0 else f"{service}-{index + 1}"


def data_dir_from_env(env: dict[str, str]) -> Path:
    return Path(env.get("FECHATTER_DATA_DIR") or REPO_ROOT / "data").resolve()


def read_dev_env(path: Path) -> dict[str, str]:
    """Parse a ``dev.env`` written by ``Stack._write_dev_env`` (KEY=shell-quoted value per line)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, raw = line.partition("=")
        parts = shlex.split(raw)
        values[key] = parts[0] if parts else ""
    return values


def load_secrets(data_dir: Path) -> dict[str, str]:
    """Generated once per data dir: nothing secret has a working default."""
    path = data_dir / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {
        name: secrets.token_urlsafe(32)
        for name in ("postgres_password", "nats_password", "redis_password", "jwt_secret")
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    return values


@dataclass
class Child:
    launch: infra.Launch
    env: dict[str, str]
    cwd: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    backoff: float = 1.0
    started_at: float = 0.0
    restart_at: float | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.launch.name

    def start(self) -> None:
        self.launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = open(self.launch.log_path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(
            self.launch.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            user=self.launch.user,
            # Own session: a terminal's Ctrl-C reaches only the supervisor, which stops children in order.
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            self._close_log()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, self.launch.stop_signal)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class StackOptions:
    data_dir: Path
    env: dict[str, str]
    durable: bool = True
    services: tuple[str, ...] = tuple(SERVICES)
    health_timeout: float = 90.0
    reset_database: bool = False
    # Start PostgreSQL, NATS and Redis and migrate, but leave the services to someone else (`make dev`):
    # their ports and environment are still worked out and written to ``dev.env`` in the data dir.
    infra_only: bool = False
    # Instances per service (consecutive ports from the service's port); one when absent.
    replicas: dict[str, int] = field(default_factory=dict)


class Stack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.data_dir = options.data_dir
        self.log_dir = self.data_dir / "logs"
        self.env = dict(options.env)
        self.infra: list[Child] = []
        self.services: list[Child] = []
        self.stopping = False
        self.ports: dict[str, int] = {}
        self.service_env: dict[str, str] = {}

    # -- configuration -------------------------------------------------------------------------------

    def _port(self, var: str, default: int) -> int:
        raw = self.env.get(var) or str(default)
        try:
            port = int(raw)
        except ValueError:
            raise StackError(f"{var}={raw!r} is not a port number") from None
        if not 0 < port < 65536:
            raise StackError(f"{var}={raw!r} is not a port number")
        return port

    def _check_ports(self, wanted: dict[str, tuple[str, int]]) -> None:
        for name, (var, port) in wanted.items():
            host = "0.0.0.0" if name == "gateway" else "127.0.0.1"
            if port_in_use(host, port):
                raise StackError(f"port {port} for {name} is already in use (set {var} to use another port)")

    # -- start ---------------------------------------------------------------------------------------

    async def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        await self._reap_stale_run()
        keys = load_secrets(self.data_dir)
        external = {
            "postgres": bool(self.env.get("DATABASE_URL")),
            "nats": bool(self.env.get("NATS_URL")),
            "redis": bool(self.env.get("REDIS_URL")),
        }
        wanted: dict[str, tuple[str, int]] = {}
        for name, (var, default) in INFRA_PORTS.items():
            if not external[name]:
                wanted[name] = (var, self._port(var, default))
        for name in self.options.services:
            _, var, default = SERVICES[name]
            base = self._port(var, default)
            for index in range(self.options.replicas.get(name, 1)):
                if base + index > 65535:
                    raise StackError(f"{var}={base}: no room for {index + 1} instances of {name}")
                wanted[instance_name(name, index)] = (var, base + index)
        owners: dict[int, str] = {}
        for name, (var, port) in wanted.items():
            if port in owners:
                raise StackError(
                    f"port {port} would serve both {owners[port]} and {name}: with replicas, give each "
                    f"service room for its instances (for example {var}={port + 10})"
                )
            owners[port] = name
        self._check_ports(wanted)
        self.ports = {name: port for name, (_, port) in wanted.items()}

        env = dict(self.env)
        env["FECHATTER_DATA_DIR"] = str(self.data_dir)
        if not env.get("JWT_SECRET"):
            env["JWT_SECRET"] = keys["jwt_secret"]
        if not external["postgres"]:
            env["DATABASE_URL"] = (
                f"postgresql://postgres:{keys['postgres_password']}@127.0.0.1:{self.ports['postgres']}/fechatter"
            )
        if not external["nats"]:
            env["NATS_URL"] = f"nats://fechatter:{keys['nats_password']}@127.0.0.1:{self.ports['nats']}"
        if not external["redis"]:
            env["REDIS_URL"] = f"redis://:{keys['redis_password']}@127.0.0.1:{self.ports['redis']}/0"
        for name in self.options.services:
            _, var, _ = SERVICES[name]
            env[var] = str(self.ports[name])
            if name in UPSTREAM_VARS:
                servers = [
                    f"http://127.0.0.1:{self.ports[instance_name(name, i)]}"
                    for i in range(self.options.replicas.get(name, 1))
                ]
                env.setdefault(UPSTREAM_VARS[name], ",".join(servers))
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.service_env = env

        await self._start_infra(keys, external)
        if self.options.reset_database:
            await self._reset_database()
        await self._migrate()
        if self.options.infra_only:
            self._write_state()
            self._write_dev_env()
            return f"http://localhost:{self.ports.get('gateway', 8080)}"
        for name in self.options.services:
            module, var, _ = SERVICES[name]
            for index in range(self.options.replicas.get(name, 1)):
                instance = instance_name(name, index)
                launch = infra.Launch(
                    instance,
                    [sys.executable, "-m", module],
                    self.ports[instance],
                    var,
                    self.log_dir / f"{instance}.log",
                )
                child = Child(launch, {**env, var: str(self.ports[instance])}, REPO_ROOT)
                child.start()
                self.services.append(child)
        self._write_state()
        await self._wait_healthy()
        return self.url

    async def _start_infra(self, keys: dict[str, str], external: dict[str, bool]) -> None:
        waits = []
        if not external["postgres"]:
            pgdata = self.data_dir / "postgres"
            user = await asyncio.to_thread(infra.init_postgres, pgdata, keys["postgres_password"])
            launch = infra.postgres_launch(
                pgdata, self.ports["postgres"], self.log_dir, user, durable=self.options.durable
            )
            self._spawn_infra(launch)
            admin = f"postgresql://postgres:{keys['postgres_password']}@127.0.0.1:{self.ports['postgres']}/postgres"

            async def postgres_ready() -> None:
                await infra.wait_postgres(admin)
                await infra.ensure_database(admin, "fechatter")

            waits.append(postgres_ready())
        if not external["nats"]:
            self._spawn_infra(
                infra.nats_launch(
                    self.data_dir / "nats", self.ports["nats"], self.log_dir, keys["nats_password"]
                )
            )
            waits.append(infra.wait_nats(self.service_env["NATS_URL"]))
        if not external["redis"]:
            self._spawn_infra(
                infra.redis_launch(
                    self.data_dir / "redis", self.ports["redis"], self.log_dir, keys["redis_password"]
                )
            )
            waits.append(infra.wait_redis(self.service_env["REDIS_URL"]))
        try:
            await asyncio.gather(*waits)
        except RuntimeError as exc:
            raise StackError(f"{exc} (see {self.log_dir})") from None

    def _spawn_infra(self, launch: infra.Launch) -> None:
        child = Child(launch, dict(os.environ), self.data_dir)
        child.start()
        self.infra.append(child)

    async def _reset_database(self) -> None:
        import asyncpg

        url = self.service_env["DATABASE_URL"]
        base, _, name = url.rpartition("/")
        name = name.split("?", 1)[0]
        conn = await asyncpg.connect(base + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def _migrate(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(REPO_ROOT / "alembic.ini"),
            "upgrade",
            "head",
            env=self.service_env,
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await proc.communicate()
        (self.log_dir / "migrations.log").write_bytes(output)
        if proc.returncode != 0:
            raise StackError(f"migrations failed (see {self.log_dir / 'migrations.log'})")

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.options.health_timeout
        pending = {child.name: child for child in self.services}
        # The gateway's certificate may be self-signed: only whether it answers matters here.
        async with httpx.AsyncClient(timeout=2.0, verify=False) as client:  # noqa: S501
            while pending:
                for name, child in list(pending.items()):
                    if not child.running():
                        code = child.proc.returncode if child.proc else "?"
                        raise StackError(
                            f"{name} exited during start-up with code {code} (see {child.launch.log_path})"
                        )
                    try:
                        scheme = "https" if child.name == "gateway" and self.tls else "http"
                        url = f"{scheme}://127.0.0.1:{child.launch.port}/health"
                        response = await client.get(url)
                        if response.status_code == 200:
                            del pending[name]
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    names = ", ".join(sorted(pending))
                    raise StackError(f"not healthy after {self.options.health_timeout:.0f}s: {names}")
                if pending:
                    await asyncio.sleep(0.2)

    # -- run -----------------------------------------------------------------------------------------

    async def watch(self) -> None:
        """Restart any child that dies, with exponential backoff, until ``stop`` is called."""
        while not self.stopping:
            now = time.monotonic()
            for child in self.infra + self.services:
                if self.stopping:
                    break
                if child.running():
                    if now - child.started_at > STABLE_AFTER:
                        child.backoff = 1.0
                    continue
                if child.restart_at is None:
                    code = child.proc.returncode if child.proc else None
                    child.restart_at = now + child.backoff
                    log.warning(
                        "%s exited with code %s; restarting in %.0fs (restart #%d)",
                        child.name,
                        code,
                        child.backoff,
                        child.restarts + 1,
                    )
                    child.backoff = min(child.backoff * 2, MAX_BACKOFF)
                elif now >= child.restart_at:
                    child.restarts += 1
                    try:
                        child.start()
                        log.warning("%s restarted (pid %d)", child.name, child.proc.pid if child.proc else -1)
                    except OSError as exc:
                        log.error("could not restart %s: %s", child.name, exc)
                        child.restart_at = now + child.backoff
                    self._write_state()
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        self.stopping = True
        # Services first (they hold connections to the infrastructure), then infrastructure.
        await asyncio.gather(*(child.stop() for child in reversed(self.services)))
        await asyncio.gather(*(child.stop(timeout=20) for child in reversed(self.infra)))
        self.state_path.unlink(missing_ok=True)
        if self.options.infra_only:
            self.dev_env_path.unlink(missing_ok=True)

    # -- environment of services started elsewhere (`fechatter up --infra-only`, `make dev`) ---------------

    @property
    def dev_env_path(self) -> Path:
        return self.data_dir / DEV_ENV_FILE

    def dev_env(self) -> dict[str, str]:
        """What a service needs beyond the caller's environment: ports, upstreams, URLs and secrets."""
        wanted = {var for _, var, _ in SERVICES.values()} | set(UPSTREAM_VARS.values())
        wanted |= {"FECHATTER_DATA_DIR", "JWT_SECRET", "DATABASE_URL", "NATS_URL", "REDIS_URL"}
        return {
            key: value
            for key, value in sorted(self.service_env.items())
            if key in wanted or self.env.get(key) != value
        }

    def _write_dev_env(self) -> None:
        lines = [
            "# Written by `fechatter up --infra-only`; removed when it stops. Contains secrets (mode 0600).",
            *(f"{key}={shlex.quote(value)}" for key, value in self.dev_env().items()),
        ]
        tmp = self.dev_env_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        tmp.replace(self.dev_env_path)

    # -- state file for `fechatter status` / `fechatter stop` ----------------------------------------

    @property
    def tls(self) -> bool:
        return bool(self.env.get("GATEWAY_TLS_CERT") and self.env.get("GATEWAY_TLS_KEY"))

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://localhost:{self.ports.get('gateway', 8080)}"

    @property
    def state_path(self) -> Path:
        return self.data_dir / "stack.json"

    def _write_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "started_at": time.time(),
            "url": self.url,
            "children": {
                child.name: {
                    "pid": child.proc.pid if child.proc else None,
                    "argv": child.launch.argv[:3],
                    "port": child.launch.port,
                    "restarts": child.restarts,
                    "log": str(child.launch.log_path),
                }
                for child in self.infra + self.services
            },
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)

    async def _reap_stale_run(self) -> None:
        """A supervisor killed with SIGKILL leaves children behind; stop the ones recorded in its state."""
        if not self.state_path.exists():
            return
        import psutil

        state = json.loads(self.state_path.read_text())
        sup = state.get("supervisor_pid")
        if sup and psutil.pid_exists(sup):
            cmdline = ""
            with contextlib.suppress(psutil.Error):
                cmdline = " ".join(psutil.Process(sup).cmdline())
            if "fechatter" in cmdline:
                raise StackError(
                    f"Fechatter is already running from {self.data_dir} (pid {sup}); `make stop` first"
                )
        for name, child in state.get("children", {}).items():
            pid = child.get("pid")
            if not pid or not psutil.pid_exists(pid):
                continue
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                # Only a process that still runs what we started: a recycled pid is left alone.
                if proc.cmdline()[: len(child.get("argv", []))] == child.get("argv") and child.get("argv"):
                    log.warning("stopping %s left over from an earlier run (pid %d)", name, pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGTERM)
                    with contextlib.suppress(psutil.TimeoutExpired):
                        proc.wait(10)
                    if proc.is_running():
                        proc.kill()
        self.state_path.unlink(missing_ok=True)
