"""Start and stop a whole Fechatter stack (the real supervisor, real processes) for tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PORT_VARS = (
    "GATEWAY_PORT",
    "FECHATTER_PORT",
    "NOTIFY_PORT",
    "BOT_PORT",
    "ANALYTICS_PORT",
    "PG_PORT",
    "NATS_PORT",
    "REDIS_PORT",
)


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM to the group a process leads (started with ``start_new_session``), SIGKILL if it lingers."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class RunningStack:
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        scheme = "https" if self.env.get("GATEWAY_TLS_CERT") else "http"
        return f"{scheme}://127.0.0.1:{self.env['GATEWAY_PORT']}"

    def port(self, var: str) -> int:
        return int(self.env[var])

    def state(self) -> dict:
        return json.loads((self.data_dir / "stack.json").read_text())

    def secrets(self) -> dict[str, str]:
        return json.loads((self.data_dir / "secrets.json").read_text())

    def database_url(self, database: str = "fechatter") -> str:
        password = self.secrets()["postgres_password"]
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port('PG_PORT')}/{database}"

    def start(self, timeout: float = 150.0) -> float:
        """Start the supervisor; returns the seconds until it printed that Fechatter is up."""
        started = time.monotonic()
        out_path = self.data_dir.parent / f"{self.data_dir.name}-supervisor.log"
        offset = out_path.stat().st_size if out_path.exists() else 0
        with open(out_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fechatter_stack", "up"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        buffer = ""
        while time.monotonic() - started < timeout:
            buffer = out_path.read_bytes()[offset:].decode(errors="replace")
            if "Fechatter is up" in buffer:
                self.output.append(buffer)
                return time.monotonic() - started
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.output.append(buffer)
        self.stop()
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted((self.data_dir / "logs").glob("*"))
        )
        raise RuntimeError(f"stack did not start: {buffer}\n{logs}")

    def log_problems(self, limit: int = 40) -> str:
        """The last error lines of every process's log: printed when a test session fails, because the
        temporary data dir (and its logs) is gone by the time anyone reads the report."""
        markers = ("ERROR", "CRITICAL", "Traceback", "FATAL", "PANIC", "terminated by signal", "exited with")
        parts = []
        for log in sorted((self.data_dir / "logs").glob("*.log")):
            with contextlib.suppress(OSError):
                lines = log.read_text(errors="replace").splitlines()
                hits = [line for line in lines if any(marker in line for marker in markers)]
                if hits:
                    parts.append(f"--- {log.name} ---\n" + "\n".join(hits[-limit:]))
        return "\n".join(parts)

    def stop(self, timeout: float = 60.0, sig: int = signal.SIGTERM) -> None:
        """Stop the supervisor: SIGTERM as `make stop` does, or SIGINT as Ctrl-C in a terminal does."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Belt and braces: anything the supervisor recorded and did not stop is stopped by its pid.
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            for child in self.state().get("children", {}).values():
                pid = child.get("pid")
                if pid:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)


def make_stack(data_dir: Path, **overrides: str) -> RunningStack:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FECHATTER_", "DATABASE_URL", "NATS_URL", "REDIS_URL", "JWT_SECRET"))
    }
    env.update(dict(zip(PORT_VARS, map(str, free_ports(len(PORT_VARS))), strict=True)))
    env.update(
        {
            "FECHATTER_DATA_DIR": str(data_dir),
            "FECHATTER_PG_DURABLE": "0",
            "LOG_LEVEL": "info",
            "REFRESH_REUSE_GRACE_SECONDS": "1",
            "SSE_PING_SECONDS": "2",
            "SIGNIN_FAILURES_PER_ACCOUNT": "5",
            # Every test signs in from the one loopback address; the browser tests alone sign in about 45
            # times a minute. tests/e2e/test_accounts.py reaches this limit on purpose from another address.
            "SIGNIN_PER_IP": "60",
            # The session stack serves every test from one address; tests/e2e/test_gateway.py runs its
            # own stack with small limits.
            "GATEWAY_RATE_LIMITS": "false",
        }
    )
    env.update(overrides)
    data_dir.mkdir(parents=True, exist_ok=True)
    return RunningStack(data_dir=data_dir, env=env)


def config_dir_with(target: Path, name: str, replace: dict[str, str]) -> Path:
    """A copy of fixtures/ in ``target`` where ``<name>.yml`` has each ``old`` text replaced by ``new``
    (for a stack started with FECHATTER_CONFIG_DIR)."""
    target.mkdir(parents=True, exist_ok=True)
    for source in (REPO_ROOT / "fixtures").glob("*.yml"):
        text = source.read_text()
        if source.stem == name:
            for old, new in replace.items():
                if old not in text:
                    raise ValueError(f"{old!r} is not in {source}")
                text = text.replace(old, new)
        (target / source.name).write_text(text)
    return target
