"""docker-compose.yml checked without a Docker engine: it validates (docker-compose's own `config` and the
compose-spec JSON schema that Debian's docker-compose ships), and it keeps what it promises: health checks,
restart policies and memory limits everywhere, non-root project containers, one published port, secrets
without defaults, every variable documented in env.example, and service environments that the real
fixtures/*.yml accept."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fechatter_core.config import expand_env, load_config
from fechatter_core.settings import (
    AnalyticsSettings,
    BotSettings,
    FechatterSettings,
    GatewaySettings,
    NotifySettings,
)

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
# compose-spec schema as shipped by Debian's docker-compose package (Apache-2.0, from compose-spec).
DEBIAN_SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")

INFRA = {"postgres", "redis", "nats", "meilisearch", "clickhouse"}
# compose service -> (fixture name, settings type, port inside the container)
PROJECT = {
    "fechatter-server": ("fechatter", FechatterSettings, 6688),
    "notify-server": ("notify", NotifySettings, 6687),
    "bot-server": ("bot", BotSettings, 6686),
    "analytics-server": ("analytics", AnalyticsSettings, 6690),
    "gateway": ("gateway", GatewaySettings, 8080),
}
REQUIRED_SECRETS = {
    "JWT_SECRET",
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "NATS_PASSWORD",
    "MEILI_MASTER_KEY",
    "CLICKHOUSE_PASSWORD",
}
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|_KEY)$")
REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<rest>[^}]*)\}")
TEST_SECRETS = {name: f"test-{name.lower()}-0123456789abcdef" for name in REQUIRED_SECRETS}


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing: .ci/run installs it")
        pytest.skip(f"{tool} is not installed (apt-get install -y {tool})")
    return found


@pytest.fixture(scope="module")
def raw() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(raw: str) -> dict[str, Any]:
    return yaml.safe_load(raw)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env_example_names() -> set[str]:
    names = set()
    for line in (REPO / "env.example").read_text().splitlines():
        found = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if found:
            names.add(found.group(1))
    return names


def _compose_project(tmp_path: Path) -> Path:
    """The compose file alone in an empty directory, so that no local .env leaks into the check."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    return tmp_path


def _clean_env(**extra: str) -> dict[str, str]:
    names = _env_example_names() | REQUIRED_SECRETS
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("COMPOSE_")}
    env.update(extra)
    return env


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    tool = _need("docker-compose")
    project = _compose_project(tmp_path)
    result = subprocess.run(
        [tool, "-p", "fechatter", "config"],
        cwd=project,
        env=_clean_env(**TEST_SECRETS),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert set(rendered["services"]) == INFRA | set(PROJECT) | {"migrate"}
    gateway = rendered["services"]["gateway"]
    assert any("8080" in str(port) for port in gateway["ports"])
    # The secrets given are what the containers get.
    env = rendered["services"]["fechatter-server"]["environment"]
    assert env["JWT_SECRET"] == TEST_SECRETS["JWT_SECRET"]
    assert TEST_SECRETS["POSTGRES_PASSWORD"] in env["DATABASE_URL"]


@pytest.mark.parametrize("missing", sorted(REQUIRED_SECRETS))
def test_docker_compose_refuses_to_start_without_each_secret(tmp_path: Path, missing: str) -> None:
    tool = _need("docker-compose")
    project = _compose_project(tmp_path)
    given = {k: v for k, v in TEST_SECRETS.items() if k != missing}
    result = subprocess.run(
        [tool, "-p", "fechatter", "config", "-q"],
        cwd=project,
        env=_clean_env(**given),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


def test_an_env_copied_from_env_example_is_refused_until_the_secrets_are_set(tmp_path: Path) -> None:
    """`cp env.example .env` as the README says: compose refuses it, then accepts it with the secrets
    filled in, and takes the documented defaults from it (no comment read as part of a value)."""
    tool = _need("docker-compose")
    project = _compose_project(tmp_path)
    example = (REPO / "env.example").read_text()
    (project / ".env").write_text(example)
    refused = subprocess.run(
        [tool, "-p", "fechatter", "config", "-q"],
        cwd=project,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "in .env" in refused.stderr
    filled = "".join(f"{name}={value}\n" for name, value in TEST_SECRETS.items())
    (project / ".env").write_text(example + filled)
    result = subprocess.run(
        [tool, "-p", "fechatter", "config"],
        cwd=project,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    env = rendered["services"]["fechatter-server"]["environment"]
    assert env["JWT_SECRET"] == TEST_SECRETS["JWT_SECRET"]
    assert env["LOG_LEVEL"] == "info" and env["SSE_PING_SECONDS"] == "15"
    assert "#" not in result.stdout.split("services:", 1)[1]
    assert rendered["services"]["postgres"]["deploy"]["resources"]["limits"]["memory"] == "1g"


def test_compose_file_matches_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    if not DEBIAN_SCHEMA.exists():
        _need("docker-compose")  # the package that ships the schema
    import jsonschema

    validator = jsonschema.Draft201909Validator(json.loads(DEBIAN_SCHEMA.read_text()))
    # The x- extension blocks are allowed by the schema; validate the document as compose reads it.
    validator.validate(compose)
    with pytest.raises(jsonschema.ValidationError):
        broken = {**compose, "services": {**compose["services"], "gateway": {"restart_policy": "always"}}}
        validator.validate(broken)


def test_every_long_running_service_has_healthcheck_restart_and_memory_limit(
    services: dict[str, dict[str, Any]],
) -> None:
    long_running = set(services) - {"migrate"}
    assert long_running == INFRA | set(PROJECT)
    for name in long_running:
        service = services[name]
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), f"{name}: no restart"
        memory = service.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
        assert memory, f"{name}: no memory limit"
        assert "fechatter-net" in service.get("networks", []), f"{name}: not on fechatter-net"
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["deploy"]["resources"]["limits"]["memory"]


def test_project_containers_run_the_project_image_as_non_root(services: dict[str, dict[str, Any]]) -> None:
    for name in [*PROJECT, "migrate"]:
        service = services[name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert service["image"].startswith("${FECHATTER_IMAGE")
        uid = str(service["user"]).split(":")[0]
        assert uid not in ("0", "root"), name
        assert service["init"] is True


def test_only_the_gateway_publishes_a_port(services: dict[str, dict[str, Any]]) -> None:
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"gateway"}
    (port,) = services["gateway"]["ports"]
    assert port.endswith(":${GATEWAY_PORT:-8080}:8080")
    for service in services.values():
        assert "network_mode" not in service


def test_services_start_after_migrations_and_healthy_infrastructure(
    services: dict[str, dict[str, Any]],
) -> None:
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in PROJECT:
        depends = services[name]["depends_on"]
        for dependency, rule in depends.items():
            expected = "service_completed_successfully" if dependency == "migrate" else "service_healthy"
            assert rule == {"condition": expected}, (name, dependency)
        if name != "gateway":
            assert "migrate" in depends, name
    assert set(services["gateway"]["depends_on"]) == set(PROJECT) - {"gateway"}


def test_named_volumes_hold_the_state(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert not source.startswith((".", "/")), f"bind mount {volume}"
            used.add(source)
    assert used == declared
    assert {"postgres_data", "nats_data", "redis_data", "meili_data", "clickhouse_data"} <= declared
    assert compose["networks"]["fechatter-net"]["driver"] == "bridge"


def test_no_secret_has_a_default(raw: str) -> None:
    seen = set()
    for found in REFERENCE.finditer(raw):
        name, op, rest = found.group("name"), found.group("op") or "", found.group("rest")
        if name in REQUIRED_SECRETS:
            assert op == ":?", f"{found.group(0)}: a required secret must use ${{{name}:?...}}"
            seen.add(name)
        elif SECRET_NAME.search(name):
            # An optional credential (the LLM key) may be empty, never a working value.
            assert op in ("", ":-", "-") and rest == "", f"{found.group(0)} has a default"
    assert seen == REQUIRED_SECRETS


def test_every_variable_used_is_listed_in_env_example(raw: str) -> None:
    used = {found.group("name") for found in REFERENCE.finditer(raw)}
    missing = used - _env_example_names()
    assert not missing, f"not in env.example: {sorted(missing)}"


def test_every_fixture_variable_is_listed_in_env_example() -> None:
    used = set()
    for path in (REPO / "fixtures").glob("*.yml"):
        used |= {found.group("name") for found in REFERENCE.finditer(path.read_text())}
    missing = used - _env_example_names()
    assert not missing, f"not in env.example: {sorted(missing)}"


def _container_env(services: dict[str, dict[str, Any]], name: str) -> dict[str, str]:
    """The environment a container gets, interpolated as compose does (no .env: defaults apply)."""
    expanded = expand_env(services[name]["environment"], TEST_SECRETS, file="docker-compose.yml")
    assert isinstance(expanded, dict)
    return {str(k): str(v) for k, v in expanded.items()}


@pytest.mark.parametrize("name", sorted(PROJECT))
def test_fixtures_accept_each_container_environment(services: dict[str, dict[str, Any]], name: str) -> None:
    fixture, settings_type, port = PROJECT[name]
    env = _container_env(services, name)
    assert env["FECHATTER_CONFIG_DIR"] == "/app/fixtures"
    settings = load_config(fixture, settings_type, env=env, config_dir=REPO / "fixtures")
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == port
    # The container's health check asks the port the service listens on.
    assert f"127.0.0.1:{port}/health" in " ".join(services[name]["healthcheck"]["test"])
    assert settings.auth.jwt_secret == TEST_SECRETS["JWT_SECRET"]
    if hasattr(settings, "database"):
        assert settings.database.url.endswith("@postgres:5432/fechatter")
    if hasattr(settings, "nats"):
        assert settings.nats.url.startswith("nats://fechatter:")
        assert settings.nats.url.endswith("@nats:4222")
    if isinstance(settings, FechatterSettings | NotifySettings):
        assert settings.redis.url == "redis://redis:6379/0"
        assert settings.redis.password == TEST_SECRETS["REDIS_PASSWORD"]
    if isinstance(settings, FechatterSettings):
        assert settings.search.engine == "meilisearch"
        assert settings.search.meili_url == "http://meilisearch:7700"
        assert settings.search.meili_master_key == TEST_SECRETS["MEILI_MASTER_KEY"]
        assert settings.storage.path == "/data/files"
    if isinstance(settings, AnalyticsSettings):
        assert settings.clickhouse.engine == "server"
        assert settings.clickhouse.url.endswith("@clickhouse:8123/fechatter_analytics")
    if isinstance(settings, GatewaySettings):
        servers = {upstream: cfg.servers for upstream, cfg in settings.upstreams.items()}
        assert servers == {
            "fechatter_server": ["http://fechatter-server:6688"],
            "notify_server": ["http://notify-server:6687"],
            "bot_server": ["http://bot-server:6686"],
            "analytics_server": ["http://analytics-server:6690"],
        }


def test_the_migration_step_runs_alembic_against_the_compose_database(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _container_env(services, "migrate")
    assert env["FECHATTER_SERVICE"] == "migrate"
    assert env["DATABASE_URL"].startswith("postgresql://fechatter:")
    entrypoint = (REPO / "docker" / "entrypoint.sh").read_text()
    assert "migrate)" in entrypoint and "alembic -c /app/alembic.ini upgrade head" in entrypoint
