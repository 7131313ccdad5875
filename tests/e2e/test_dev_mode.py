"""`make dev` and `make dev-stop` as a developer runs them: a tmux session (on a private tmux socket, so a
user's own sessions are never touched) with the infrastructure and one pane per service, the platform
answering through the gateway, a service restarted when its code changes, and nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from fechatter_core.serve import port_in_use
from fechatter_stack.supervisor import SERVICES
from tests.conftest import unique_email
from tests.stackutil import PORT_VARS, make_stack

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


class DevSession:
    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.env = env
        self.data_dir = data_dir
        self.socket = env["DEV_TMUX_SOCKET"]
        self.session = env["DEV_SESSION"]

    def make(self, target: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", target],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30, check=False
        )

    def panes(self) -> dict[str, int]:
        result = self.tmux(
            "list-panes", "-s", "-t", f"={self.session}", "-F", "#{@fechatter_role} #{pane_pid}"
        )
        assert result.returncode == 0, result.stderr
        return {role: int(pid) for role, pid in (line.split() for line in result.stdout.splitlines())}

    def screen(self, role: str) -> str:
        pane = self.panes()[role]
        for line in self.tmux(
            "list-panes", "-s", "-t", f"={self.session}", "-F", "#{pane_pid} #{pane_id}"
        ).stdout.splitlines():
            pid, pane_id = line.split()
            if int(pid) == pane:
                return self.tmux("capture-pane", "-p", "-t", pane_id, "-S", "-200").stdout
        return ""

    def processes(self) -> list[psutil.Process]:
        found = []
        for pid in self.panes().values():
            try:
                proc = psutil.Process(pid)
                found += [proc, *proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return found

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.env['GATEWAY_PORT']}"

    def wait_healthy(self, timeout: float = 300) -> httpx.Response:
        deadline = time.monotonic() + timeout
        last: httpx.Response | None = None
        while time.monotonic() < deadline:
            try:
                last = httpx.get(f"{self.gateway}/api/health/all", timeout=5)
                if last.status_code == 200:
                    return last
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        screens = "\n".join(f"--- {role}\n{self.screen(role)[-1500:]}" for role in self.panes())
        raise AssertionError(f"not healthy in {timeout}s: {last and last.text}\n{screens}")


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevSession]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing: .ci/run installs it")
        pytest.skip("tmux is not installed")
    data_dir = tmp_path / "data"
    env = make_stack(data_dir).env
    env.update(
        DEV_TMUX_SOCKET=f"fechatter-test-{os.getpid()}-{tmp_path.name}",
        DEV_SESSION="fechatter-test",
        DEV_ATTACH="0",
        DEV_FRONTEND="0",
    )
    env.pop("TMUX", None)
    session = DevSession(env, data_dir)
    recorded: list[psutil.Process] = []
    try:
        yield session
    finally:
        # Whatever the test did, nothing it started outlives it.
        if session.tmux("has-session", "-t", f"={session.session}").returncode == 0:
            recorded = session.processes()
            session.make("dev-stop")
        for proc in recorded:
            if proc.is_running():
                proc.kill()
        session.tmux("kill-server")


@pytest.mark.timeout(600)  # two whole stacks start on this machine when the suite's own stack is up
def test_make_dev_runs_each_service_in_a_pane_and_dev_stop_leaves_nothing(dev: DevSession) -> None:
    started = dev.make("dev")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "Development session 'fechatter-test': 6 panes" in started.stdout
    panes = dev.panes()
    assert set(panes) == {"infra", *SERVICES}

    health = dev.wait_healthy().json()
    assert set(health["services"]) == set(SERVICES)
    # Everything up; at most the bot is without an LLM (none is configured here), which is "degraded".
    failing = {
        (service, name)
        for service, state in health["services"].items()
        for name, check in state.get("checks", {}).items()
        if check["status"] != "ok"
    }
    assert health["status"] in ("ok", "degraded") and failing <= {("bot_server", "llm")}, health
    # The platform works through the gateway: a sign-up reaches PostgreSQL through the chat API.
    signup = httpx.post(
        f"{dev.gateway}/api/signup",
        json={
            "email": unique_email("dev"),
            "password": "correct horse 1",
            "fullname": "Dev",
            "workspace_name": "D",
        },
        timeout=30,
    )
    assert signup.status_code == 201, signup.text
    # The infrastructure pane printed the services' environment with the secrets masked.
    infra_screen = dev.screen("infra")
    assert "Infrastructure is up" in infra_screen
    assert f"GATEWAY_PORT={dev.env['GATEWAY_PORT']}" in infra_screen
    secrets = (dev.data_dir / "secrets.json").read_text()
    assert "JWT_SECRET=***" in infra_screen
    for value in json.loads(secrets).values():
        assert value not in infra_screen

    # Auto-reload: changing a file of the gateway's package restarts the gateway process, and only it.
    def server_pid(role: str) -> int:
        """The service process that the pane's watcher runs (none for a moment while it restarts)."""
        children = psutil.Process(panes[role]).children()
        return children[0].pid if len(children) == 1 else -1

    before = {role: server_pid(role) for role in SERVICES}
    (REPO / "gateway" / "__init__.py").touch()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server_pid("gateway") in (before["gateway"], -1):
        time.sleep(0.3)
    assert server_pid("gateway") not in (before["gateway"], -1), dev.screen("gateway")[-1500:]
    dev.wait_healthy(timeout=120)
    for role in set(SERVICES) - {"gateway"}:
        assert server_pid(role) == before[role], role

    processes = dev.processes()
    assert len(processes) > 12  # panes, watchers, servers and their workers, postgres, nats, redis
    stopped = dev.make("dev-stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert dev.tmux("has-session", "-t", f"={dev.session}").returncode != 0
    alive = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
    for var in PORT_VARS:
        port = int(dev.env[var])
        assert not port_in_use("127.0.0.1", port), f"{var}={port} still in use"
    assert not (dev.data_dir / "dev.env").exists()
    assert not (dev.data_dir / "stack.json").exists()


@pytest.mark.timeout(300)
def test_make_dev_refuses_a_second_session_or_a_taken_port(dev: DevSession) -> None:
    assert dev.tmux("new-session", "-d", "-s", dev.session, "sleep 300").returncode == 0
    second = dev.make("dev")
    assert second.returncode != 0
    assert f"tmux session '{dev.session}' already exists" in second.stderr
    dev.tmux("kill-session", "-t", f"={dev.session}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(dev.env["NOTIFY_PORT"])))
        taken.listen()
        refused = dev.make("dev")
    assert refused.returncode != 0
    assert (
        f"port {dev.env['NOTIFY_PORT']} for notify_server is already in use (set NOTIFY_PORT"
        in refused.stderr
    )
    assert dev.tmux("has-session", "-t", f"={dev.session}").returncode != 0
    stopped = dev.make("dev-stop")
    assert stopped.returncode == 0
    assert "No tmux session 'fechatter-test'" in stopped.stdout
