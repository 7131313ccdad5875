"""``make dev``: a tmux session with one pane for the infrastructure and one per service, each service
restarted by watchfiles when its code (or the shared package, or the configs) changes, plus the Vite dev
server when the web client exists. ``make dev-stop`` stops every process of every pane by its pid, the
services first and the infrastructure last, then ends the session.

The panes do not rely on tmux passing the environment on (a tmux server started earlier keeps its own):
``fechatter dev`` writes the caller's environment into the data dir and each pane reads it back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from fechatter_core.serve import port_in_use
from fechatter_stack.supervisor import DEV_ENV_FILE, INFRA_PORTS, REPO_ROOT, SERVICES, read_dev_env

WINDOW = "fechatter"
LAUNCH_FILE = "dev-launch.json"
FRONTEND_DIR = REPO_ROOT / "fechatter_frontend"
# What each service's watcher restarts it for, besides its own package.
WATCHED_SHARED = ("fechatter_core", "fixtures")
# Variables that belong to the calling terminal's tmux client, not to the panes.
_TMUX_VARS = ("TMUX", "TMUX_PANE")


class DevError(Exception):
    pass


@dataclass
class Tmux:
    session: str
    socket: str | None = None

    def argv(self, *args: str) -> list[str]:
        return ["tmux", *(["-L", self.socket] if self.socket else []), *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.argv(*args), capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise DevError(f"tmux {' '.join(args)}: {result.stderr.strip() or result.returncode}")
        return result

    @property
    def target(self) -> str:
        # "=name" matches the session name exactly, not as a prefix.
        return f"={self.session}"

    def exists(self) -> bool:
        return self.run("has-session", "-t", self.target, check=False).returncode == 0

    def panes(self) -> list[tuple[int, str]]:
        """(pid, role) of every pane; the role is the title given at creation."""
        result = self.run("list-panes", "-s", "-t", self.target, "-F", "#{pane_pid} #{@fechatter_role}")
        panes = []
        for line in result.stdout.splitlines():
            pid, _, role = line.partition(" ")
            panes.append((int(pid), role.strip()))
        return panes


def _pane_command(data_dir: Path, role: str) -> str:
    argv = [sys.executable, "-m", "fechatter_stack", "--data-dir", str(data_dir), "dev-pane", role]
    return shlex.join(argv)


def _live_supervisor(data_dir: Path) -> int | None:
    path = data_dir / "stack.json"
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, KeyError):
        pid = int(json.loads(path.read_text())["supervisor_pid"])
        if psutil.pid_exists(pid):
            return pid
    return None


def frontend_enabled(env: dict[str, str]) -> bool:
    return env.get("DEV_FRONTEND", "1") != "0" and (FRONTEND_DIR / "package.json").exists()


def _check_ports(env: dict[str, str]) -> None:
    """Refuse before the session exists rather than leave panes waiting on an infrastructure that failed."""
    external = {"postgres": "DATABASE_URL", "nats": "NATS_URL", "redis": "REDIS_URL"}
    wanted = [(name, var, default) for name, (_, var, default) in SERVICES.items()]
    wanted += [
        (name, var, default) for name, (var, default) in INFRA_PORTS.items() if not env.get(external[name])
    ]
    for name, var, default in wanted:
        raw = env.get(var) or str(default)
        if not raw.isdigit():
            raise DevError(f"{var}={raw!r} is not a port number")
        if port_in_use("0.0.0.0" if name == "gateway" else "127.0.0.1", int(raw)):
            raise DevError(f"port {raw} for {name} is already in use (set {var} to use another port)")


def dev_up(data_dir: Path, tmux: Tmux, env: dict[str, str], attach: bool) -> int:
    if shutil.which("tmux") is None:
        raise DevError("make dev needs tmux (apt-get install tmux, or brew install tmux)")
    if tmux.exists():
        raise DevError(f"tmux session {tmux.session!r} already exists: `make dev-stop` first")
    pid = _live_supervisor(data_dir)
    if pid is not None:
        raise DevError(f"Fechatter is already running from {data_dir} (pid {pid}): stop it first")
    _check_ports(env)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / DEV_ENV_FILE).unlink(missing_ok=True)  # a stale one would let services start too early
    launch_env = {k: v for k, v in env.items() if k not in _TMUX_VARS}
    launch_env["FECHATTER_DATA_DIR"] = str(data_dir)
    fd = os.open(data_dir / LAUNCH_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(launch_env, handle)

    roles = ["infra", *SERVICES]
    if frontend_enabled(env):
        roles.append("frontend")
    cwd = str(REPO_ROOT)
    tmux.run(
        "new-session", "-d", "-s", tmux.session, "-n", WINDOW, "-x", "220", "-y", "60", "-c", cwd,
        _pane_command(data_dir, roles[0]),
    )  # fmt: skip
    window = f"{tmux.target}:{WINDOW}"
    # A pane whose process exits stays on screen with its last output, so a crash can be read.
    tmux.run("set-option", "-w", "-t", window, "remain-on-exit", "on")
    tmux.run("set-option", "-w", "-t", window, "pane-border-status", "top")
    tmux.run("set-option", "-w", "-t", window, "pane-border-format", " #{@fechatter_role} ")
    tmux.run("set-option", "-p", "-t", f"{window}.0", "@fechatter_role", roles[0])
    for role in roles[1:]:
        result = tmux.run(
            "split-window", "-t", window, "-c", cwd, "-P", "-F", "#{pane_id}", _pane_command(data_dir, role)
        )
        tmux.run("set-option", "-p", "-t", result.stdout.strip(), "@fechatter_role", role)
        tmux.run("select-layout", "-t", window, "tiled")
    gateway = env.get("GATEWAY_PORT") or "8080"
    attach_cmd = shlex.join(tmux.argv("attach", "-t", tmux.session))
    print(f"Development session {tmux.session!r}: {len(roles)} panes ({', '.join(roles)})")
    print(f"Gateway: http://localhost:{gateway} once every pane is up.  Attach: {attach_cmd}")
    print("Stop everything: make dev-stop")
    if attach and sys.stdin.isatty() and sys.stdout.isatty() and "TMUX" not in env:
        os.execvp("tmux", tmux.argv("attach", "-t", tmux.session))
    return 0


def _tree(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    return []


def _is_pane_runner(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "dev-pane" in " ".join(proc.cmdline())
    return False


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)  # psutil checks the pid still names the same process


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return alive


def dev_stop(data_dir: Path, tmux: Tmux) -> int:
    """Stop the session's processes by pid (services, then the infrastructure), then end the session."""
    if not tmux.exists():
        print(f"No tmux session {tmux.session!r}.")
        pid = _live_supervisor(data_dir)
        if pid is not None:
            print(f"Stopping the infrastructure left running from {data_dir} (pid {pid})")
            _stop_tree(_tree(pid), timeout=40)
        return 0
    panes = tmux.panes()
    services = [proc for pid, role in panes if role != "infra" for proc in _tree(pid)]
    infra = [proc for pid, role in panes if role == "infra" for proc in _tree(pid)]
    _stop_tree(services, timeout=15)
    # The infrastructure supervisor stops PostgreSQL, NATS and Redis in order on SIGTERM.
    _stop_tree(infra, timeout=40, first=[p for p in infra if _is_pane_runner(p)])
    tmux.run("kill-session", "-t", tmux.target, check=False)
    left = [p for p in services + infra if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for name in (LAUNCH_FILE, DEV_ENV_FILE):
        (data_dir / name).unlink(missing_ok=True)
    if left or tmux.exists():
        print(f"Some processes did not stop: {[p.pid for p in left]}", file=sys.stderr)
        return 1
    print(f"Development session {tmux.session!r} stopped; {len(services) + len(infra)} processes ended.")
    return 0


def _stop_tree(
    procs: list[psutil.Process], timeout: float, first: list[psutil.Process] | None = None
) -> None:
    if first:
        # Let the root stop its own children in its order before anything else is signalled.
        _signal_all(first, signal.SIGTERM)
        _wait_gone(first, timeout)
    _signal_all(procs, signal.SIGTERM)
    alive = _wait_gone(procs, timeout)
    if alive:
        _signal_all(alive, signal.SIGKILL)
        _wait_gone(alive, 5)


# -- what runs inside each pane ------------------------------------------------------------------------


def _launch_env(data_dir: Path) -> dict[str, str]:
    path = data_dir / LAUNCH_FILE
    if not path.exists():
        return dict(os.environ)
    return json.loads(path.read_text())


def run_pane(data_dir: Path, role: str) -> int:
    env = _launch_env(data_dir)
    if role == "infra":
        from fechatter_stack import cli

        os.environ.clear()
        os.environ.update(env)
        return cli.main(["--data-dir", str(data_dir), "up", "--infra-only"])
    if role == "frontend":
        return _run_frontend(env)
    if role not in SERVICES:
        raise DevError(f"unknown pane {role!r}")
    dev_env = data_dir / DEV_ENV_FILE
    print(f"{role}: waiting for the infrastructure ({dev_env})", flush=True)
    while not dev_env.exists():
        time.sleep(0.2)
    env.update(read_dev_env(dev_env))
    module = SERVICES[role][0]
    watched = [str(REPO_ROOT / module), *(str(REPO_ROOT / p) for p in WATCHED_SHARED)]
    watchfiles = str(Path(sys.executable).parent / "watchfiles")
    argv = [
        watchfiles, "--target-type", "command", "--sigint-timeout", "5", "--sigkill-timeout", "5",
        shlex.join([sys.executable, "-m", module]), *watched,
    ]  # fmt: skip
    os.chdir(REPO_ROOT)
    os.execve(watchfiles, argv, env)


def _run_frontend(env: dict[str, str]) -> int:
    npm = shutil.which("npm", path=env.get("PATH"))
    if npm is None:
        print("frontend: npm not found; install Node.js 20.19+ for the Vite dev server", flush=True)
        return 1
    os.chdir(FRONTEND_DIR)
    if not (FRONTEND_DIR / "node_modules").exists():
        subprocess.run([npm, "install", "--no-audit", "--no-fund"], env=env, check=False)
    gateway = f"http://127.0.0.1:{env.get('GATEWAY_PORT') or '8080'}"
    env = {**env, "VITE_GATEWAY_URL": gateway, "FECHATTER_GATEWAY_URL": gateway}
    port = env.get("VITE_PORT") or "5173"
    os.execve(npm, [npm, "run", "dev", "--", "--port", port, "--strictPort"], env)
