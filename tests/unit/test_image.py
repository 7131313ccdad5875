"""The project image and the run-mode wrappers, checked without a Docker engine: the Dockerfile is parsed
(stages, non-root user, health check, dependencies from uv.lock), its entry point and health check script
are run for real, and start.sh and `make help` are run as a user would."""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fechatter_stack.supervisor import SERVICES

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
HEALTHCHECK = REPO / "docker" / "healthcheck.py"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _stages() -> list[tuple[str, list[tuple[str, str]]]]:
    stages: list[tuple[str, list[tuple[str, str]]]] = []
    for instruction, args in _instructions():
        if instruction == "FROM":
            name = args.split(" AS ")[-1] if " AS " in args else str(len(stages))
            stages.append((name, []))
        elif stages:
            stages[-1][1].append((instruction, args))
    return stages


def test_dockerfile_is_multi_stage_on_slim_python_with_a_node_stage() -> None:
    stages = _stages()
    names = [name for name, _ in stages]
    assert names == ["frontend", "builder", "runtime"]
    args = dict(a.split("=", 1) for i, a in _instructions() if i == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert args["NODE_IMAGE"].startswith("node:")
    froms = [a for i, a in _instructions() if i == "FROM"]
    assert froms[0].startswith("${NODE_IMAGE}") and froms[1].startswith("${PYTHON_IMAGE}")
    assert froms[2].startswith("${PYTHON_IMAGE}")
    # The runtime stage takes the built venv and the web client from the other stages, not their tools.
    runtime = dict(stages)["runtime"]
    copies_from = [a for i, a in runtime if i == "COPY" and a.startswith("--from=")]
    assert any(a.startswith("--from=builder") for a in copies_from)
    assert any(a.startswith("--from=frontend") and "fechatter_frontend/dist" in a for a in copies_from)
    assert not any(i == "RUN" and ("npm" in a or "uv " in a) for i, a in runtime)


def test_frontend_is_built_only_when_its_package_json_exists() -> None:
    frontend = dict(_stages())["frontend"]
    (run,) = [a for i, a in frontend if i == "RUN"]
    assert "if [ -f package.json ]" in run and "npm run build" in run
    assert "npm install" in run and "mkdir -p dist" in run
    # The build context keeps the dependencies and any local build out.
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "fechatter_frontend/node_modules/" in ignored and "fechatter_frontend/dist/" in ignored


def test_frontend_stage_script_builds_or_skips(tmp_path: Path) -> None:
    """The stage's shell script, run on a directory without package.json, succeeds and leaves dist/."""
    frontend = dict(_stages())["frontend"]
    (run,) = [a for i, a in frontend if i == "RUN"]
    (tmp_path / "README.md").write_text("web client to come")
    result = subprocess.run(["sh", "-c", run], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dist").is_dir()
    assert "serves the placeholder page" in result.stdout


def test_dependencies_come_from_the_lock_file_without_dev_tools() -> None:
    builder = dict(_stages())["builder"]
    runs = [a for i, a in builder if i == "RUN"]
    syncs = [a for a in runs if "uv sync" in a]
    assert syncs and all("--frozen" in a and "--no-dev" in a for a in syncs)
    assert any("uv.lock" in a for i, a in builder if i == "COPY")
    assert any("uv==" in a for a in runs), "uv is pinned"


def test_runtime_runs_as_a_non_root_user_with_a_health_check_and_a_default_command() -> None:
    runtime = dict(_stages())["runtime"]
    users = [a for i, a in runtime if i == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith("0:")
    assert any(i == "RUN" and "useradd --system --uid ${UID}" in a for i, a in runtime)
    # docker-compose runs the project containers as that same user.
    uid = dict(a.split("=", 1) for i, a in runtime if i == "ARG" and "=" in a)["UID"]
    assert uid != "0" and f'user: "{uid}:{uid}"' in (REPO / "docker-compose.yml").read_text()
    (healthcheck,) = [a for i, a in runtime if i == "HEALTHCHECK"]
    assert "CMD" in healthcheck and "/app/docker/healthcheck.py" in healthcheck
    assert ("ENTRYPOINT", '["/app/docker/entrypoint.sh"]') in runtime
    assert ("CMD", '["serve"]') in runtime
    assert ("VOLUME", '["/data"]') in runtime
    env = " ".join(a for i, a in runtime if i == "ENV")
    assert "FECHATTER_DATA_DIR=/data" in env and "FECHATTER_SERVICE=${SERVICE}" in env


def test_every_copied_path_exists_and_is_not_ignored() -> None:
    ignored = {line.rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()}
    for instruction, args in _instructions():
        if instruction != "COPY" or args.startswith("--from="):
            continue
        sources = [part for part in args.split() if not part.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), source
            assert source.rstrip("/") not in ignored, source
    copied = " ".join(a for i, a in _instructions() if i == "COPY")
    for package in ["fechatter_core", "fechatter_stack", "migrations", "fixtures", *SERVICES]:
        assert f"{package}/" in copied, package


def _entrypoint(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_entrypoint_runs_a_given_command_and_refuses_an_unknown_service() -> None:
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=False).returncode == 0
    ran = _entrypoint("echo", "hello from the image")
    assert ran.returncode == 0 and ran.stdout == "hello from the image\n"
    unknown = _entrypoint("serve", FECHATTER_SERVICE="chat")
    assert unknown.returncode == 64
    assert "unknown FECHATTER_SERVICE=chat" in unknown.stderr
    text = ENTRYPOINT.read_text()
    for name in SERVICES:
        assert name in text
    assert "exec fechatter up" in text


def test_entrypoint_starts_the_named_service(tmp_path: Path) -> None:
    """`serve` with FECHATTER_SERVICE=<name> execs `python -m <name>`: a stand-in python records it."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "python $*"\n')
    fake.chmod(0o755)
    ran = _entrypoint("serve", FECHATTER_SERVICE="notify_server", PATH=f"{tmp_path}:/usr/bin:/bin")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "python -m notify_server"


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path in ("/health", "/api/health/all") else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _healthcheck(*args: str, **env: str) -> int:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args], env=env, capture_output=True, timeout=30
    ).returncode


def test_healthcheck_script_follows_the_service_it_runs_in(health_server: int) -> None:
    port = str(health_server)
    assert _healthcheck(FECHATTER_SERVICE="all", GATEWAY_PORT=port) == 0
    assert _healthcheck(FECHATTER_SERVICE="notify_server", NOTIFY_PORT=port) == 0
    assert _healthcheck(f"http://127.0.0.1:{port}/health") == 0
    assert _healthcheck(f"http://127.0.0.1:{port}/other") == 1
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    closed = server.server_address[1]
    server.server_close()
    assert _healthcheck(FECHATTER_SERVICE="bot_server", BOT_PORT=str(closed)) == 1


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_start_sh_help_lists_the_verbs() -> None:
    result = _run("./start.sh", "help")
    assert result.returncode == 0
    for verb in ("help", "single", "multi", "local", "stop", "logs", "status"):
        assert re.search(rf"^  {verb}\s", result.stdout, re.MULTILINE), verb
    wrong = _run("./start.sh", "launch")
    assert wrong.returncode == 64 and "unknown command 'launch'" in wrong.stderr
    # Each verb is a make target: `local` is `make run`, and so on.
    script = (REPO / "start.sh").read_text()
    for verb, target in (
        ("single", "make build-docker run-docker"),
        ("multi", "make up"),
        ("local", "make run"),
    ):
        assert re.search(rf"^\s+{verb}\).*{target}", script, re.MULTILINE), verb


def test_make_help_lists_every_target() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9_%-]*):", makefile, re.MULTILINE))
    shown = _run("make", "help").stdout
    for target in targets:
        assert target.replace("%", "<service>") in shown, target
    for wanted in (
        "up",
        "down",
        "ps",
        "stats",
        "build-docker",
        "run-docker",
        "kill-docker",
        "dev",
        "dev-stop",
    ):
        assert wanted in targets


def test_docker_targets_say_what_they_need_without_an_engine() -> None:
    if shutil.which("docker") and _run("docker", "info").returncode == 0:
        pytest.skip("a Docker engine is reachable here")
    for target in ("up", "build-docker", "run-docker"):
        result = _run("make", target)
        assert result.returncode != 0
        assert f"{target} needs a running Docker engine" in result.stdout
    unknown = _run("make", "build-docker-chat")
    assert unknown.returncode != 0 and "unknown service 'chat'" in unknown.stdout
