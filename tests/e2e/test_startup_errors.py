"""A service (or the whole stack) that cannot start says why in one line and exits, leaving nothing behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.stackutil import PORT_VARS, REPO_ROOT, free_ports

pytestmark = pytest.mark.e2e

SECRET = "startup-test-secret-0123456789abcdef"


def clean_env(**overrides: str) -> dict[str, str]:
    """The test runner's environment without anything that would configure a service."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FECHATTER_", "GATEWAY_", "DATABASE_URL", "NATS_URL", "REDIS_URL", "JWT_SECRET"))
        and k not in PORT_VARS
    }
    env.update(overrides)
    return env


def run_module(
    module: str, env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    """Exit code 2 and exactly one non-empty line on stderr (no traceback); returns that line."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@contextlib.contextmanager
def listening(port: int, host: str = "127.0.0.1") -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        sock.listen()
        yield sock
    finally:
        sock.close()


def listeners(ports: set[int]) -> set[int]:
    return {
        conn.laddr.port
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in ports
    }


def test_port_of_the_wrong_type() -> None:
    line = error_line(run_module("gateway", clean_env(JWT_SECRET=SECRET, GATEWAY_PORT="abc")))
    assert line.startswith("gateway: configuration error: ")
    assert "fixtures/gateway.yml" in line
    assert "server.port" in line
    assert "'abc'" in line


def test_missing_required_variable() -> None:
    line = error_line(run_module("gateway", clean_env()))
    assert line.startswith("gateway: configuration error: ")
    assert "fixtures/gateway.yml" in line
    assert "auth.jwt_secret" in line
    assert "JWT_SECRET" in line
    assert "not set" in line


def test_too_short_secret() -> None:
    line = error_line(run_module("gateway", clean_env(JWT_SECRET="x")))
    assert line.startswith("gateway: configuration error: fixtures/gateway.yml: auth.jwt_secret: ")
    assert "length >= 16" in line


def test_unknown_key(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "fixtures", config_dir)
    gateway_yml = config_dir / "gateway.yml"
    text = gateway_yml.read_text()
    assert "\nserver:\n" in text
    gateway_yml.write_text(text.replace("\nserver:\n", "\nserver:\n  wrokers: 2\n", 1))

    line = error_line(
        run_module("gateway", clean_env(JWT_SECRET=SECRET, FECHATTER_CONFIG_DIR=str(config_dir)))
    )
    assert "gateway.yml" in line
    assert str(REPO_ROOT / "fixtures") not in line
    assert "server.wrokers" in line
    assert "unknown" in line


def test_missing_config_file(tmp_path: Path) -> None:
    line = error_line(run_module("gateway", clean_env(JWT_SECRET=SECRET, FECHATTER_CONFIG_DIR=str(tmp_path))))
    assert "gateway.yml" in line
    assert "not found" in line


@pytest.mark.parametrize(
    ("module", "port_var", "extra"),
    [
        ("fechatter_server", "FECHATTER_PORT", {}),
        ("gateway", "GATEWAY_PORT", {"GATEWAY_HOST": "127.0.0.1"}),
    ],
)
def test_port_already_in_use(module: str, port_var: str, extra: dict[str, str]) -> None:
    (port,) = free_ports(1)
    with listening(port):
        result = run_module(module, clean_env(JWT_SECRET=SECRET, **{port_var: str(port)}, **extra))
    line = error_line(result)
    assert line == f"{module}: port {port} is already in use (set {port_var} to use another port)"


def test_whole_stack_refuses_a_taken_gateway_port(tmp_path: Path) -> None:
    ports = dict(zip(PORT_VARS, free_ports(len(PORT_VARS)), strict=True))
    env = clean_env(**{var: str(port) for var, port in ports.items()})
    data_dir = tmp_path / "data"
    with listening(ports["GATEWAY_PORT"]):
        result = run_module("fechatter_stack", env, "--data-dir", str(data_dir), "up", timeout=60)
        others = {port for var, port in ports.items() if var != "GATEWAY_PORT"}
        left = listeners(others)
    assert result.returncode != 0, result.stdout + result.stderr
    message = result.stderr
    assert f"port {ports['GATEWAY_PORT']}" in message
    assert "gateway" in message
    assert "already in use" in message
    assert "GATEWAY_PORT" in message
    assert "Traceback" not in message
    # It gave up before starting anything: nothing listens on the other ports and no state is left.
    assert left == set()
    assert not (data_dir / "stack.json").exists()
    assert not (data_dir / "postgres").exists()
