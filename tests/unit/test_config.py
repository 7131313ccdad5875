from __future__ import annotations

import pickle
import string
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fechatter_core.config import ConfigError, config_path, expand_env, load_config
from fechatter_core.settings import NotifySettings


def expand(text: str, env: dict[str, str] | None = None, key: str = "k") -> object:
    return expand_env(text, env or {}, file="x.yml", key=key)


def expand_error(text: str, env: dict[str, str] | None = None, key: str = "k") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        expand(text, env, key)
    return info.value


# --- the four reference forms, unset vs empty ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${V}", {"V": "val"}, "val"),
        ("${V}", {"V": ""}, ""),
        ("${V:-d}", {"V": "val"}, "val"),
        ("${V:-d}", {"V": ""}, "d"),
        ("${V:-d}", {}, "d"),
        ("${V-d}", {"V": "val"}, "val"),
        ("${V-d}", {"V": ""}, ""),
        ("${V-d}", {}, "d"),
        ("${V:-}", {}, ""),
        ("${V:?msg}", {"V": "val"}, "val"),
        ("${V?msg}", {"V": "val"}, "val"),
        ("${V?msg}", {"V": ""}, ""),
    ],
)
def test_reference_forms(text: str, env: dict[str, str], expected: str) -> None:
    assert expand(text, env) == expected


def test_plain_reference_unset_is_an_error() -> None:
    err = expand_error("${DATABASE_URL}", key="database.url")
    assert str(err) == "x.yml: database.url: required variable DATABASE_URL is not set"
    assert (err.file, err.key, err.variable) == ("x.yml", "database.url", "DATABASE_URL")


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("${JWT_SECRET:?set it in .env}", {}, "JWT_SECRET: set it in .env"),
        ("${JWT_SECRET:?set it in .env}", {"JWT_SECRET": ""}, "JWT_SECRET: set it in .env"),
        ("${JWT_SECRET?set it}", {}, "JWT_SECRET: set it"),
        ("${JWT_SECRET:?}", {}, "JWT_SECRET is not set"),
        ("${JWT_SECRET?}", {}, "JWT_SECRET is not set"),
        ("${JWT_SECRET:?}", {"JWT_SECRET": ""}, "JWT_SECRET is empty"),
    ],
)
def test_required_forms_report_message(text: str, env: dict[str, str], message: str) -> None:
    err = expand_error(text, env, key="auth.secret")
    assert str(err) == f"x.yml: auth.secret: {message}"
    assert err.variable == "JWT_SECRET"


# --- defaults -------------------------------------------------------------------------------------


def test_default_may_contain_colons_and_slashes() -> None:
    assert expand("${URL:-http://h:1/x?a=b}") == "http://h:1/x?a=b"
    assert expand("${URL-a:-b}") == "a:-b"


def test_escaped_brace_in_default() -> None:
    assert expand(r'${J:-{"a": 1\}}') == '{"a": 1}'
    assert expand(r"${J:-\}\}}") == "}}"
    assert expand(r"${J:-a\b}") == r"a\b"


def test_unescaped_brace_ends_the_default() -> None:
    assert expand("${J:-{a}}") == "{a}"  # default "{a", then a literal "}"


def test_nested_default_references() -> None:
    assert expand("${A:-${B:-x}}") == "x"
    assert expand("${A:-${B:-x}}", {"B": "b"}) == "b"
    assert expand("${A:-${B:-x}}", {"A": "a", "B": "b"}) == "a"
    assert expand("${A:-pre-${B}-post}", {"B": "b"}) == "pre-b-post"


def test_default_is_only_evaluated_when_used() -> None:
    assert expand("${A:-${MISSING}}", {"A": "a"}) == "a"
    assert expand("${A:?${MISSING}}", {"A": "a"}) == "a"


def test_nested_default_error_names_inner_variable() -> None:
    err = expand_error("${A:-${B}}")
    assert err.variable == "B"
    assert "required variable B is not set" in str(err)


def test_required_message_may_reference_variables() -> None:
    err = expand_error("${A:?see ${DOCS}}", {"DOCS": "README"})
    assert str(err) == "x.yml: k: A: see README"


# --- literal text ----------------------------------------------------------------------------------


def test_several_references_in_one_value() -> None:
    env = {"USER": "u", "HOST": "db", "PORT": "5432"}
    got = expand("postgres://${USER}:${PASS:-pw}@${HOST}:${PORT}/${DB-app}", env)
    assert got == "postgres://u:pw@db:5432/app"


def test_double_dollar_is_literal_dollar() -> None:
    assert expand("$${HOME}", {"HOME": "/root"}) == "${HOME}"
    assert expand("$$$${HOME}", {"HOME": "/root"}) == "$${HOME}"
    assert expand("$$${HOME}", {"HOME": "/root"}) == "$/root"
    assert expand("${A:-$$}") == "$"


def test_lone_dollar_is_kept() -> None:
    assert expand("cost $5") == "cost $5"
    assert expand("ends with $") == "ends with $"
    assert expand("$HOME", {"HOME": "/root"}) == "$HOME"
    assert expand("${A:-$5}") == "$5"


def test_braces_and_backslashes_outside_references_are_plain_text() -> None:
    assert expand(r"a\}b}{") == r"a\}b}{"


@pytest.mark.parametrize("value", ["[1, 2]", "a: b", "${OTHER}", "$$", "{x: 1}", "- item", "true", "8080"])
def test_expanded_values_are_never_reparsed(value: str) -> None:
    assert expand("${V}", {"V": value, "OTHER": "no"}) == value
    assert expand("${U:-${V}}", {"V": value, "OTHER": "no"}) == value


# --- malformed references --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["${}", "${1abc}", "${X", "${X:-abc", "${A B}", "${A:x}", "${A.B}", "${A:", "x ${A:-${B}"]
)
def test_malformed_references(text: str) -> None:
    err = expand_error(text, {"A": "a", "B": "b", "X": "x"}, key="server.host")
    assert str(err).startswith("x.yml: server.host: malformed variable reference '${")
    assert "\n" not in str(err)


def test_malformed_reference_in_unused_default_is_still_reported() -> None:
    err = expand_error("${A:-${1}}", {"A": "a"})
    assert "malformed variable reference '${1}'" in str(err)


def test_unterminated_reference_says_so() -> None:
    assert "missing closing '}'" in str(expand_error("${X"))


def test_syntax_error_wins_over_missing_variable() -> None:
    err = expand_error("${MISSING} ${A:-${B}")
    assert "malformed variable reference '${A:-${B}'" in str(err)


# --- structure walking -----------------------------------------------------------------------------


def test_non_string_scalars_and_keys_untouched() -> None:
    doc = {
        "${K}": "${V}",
        "int": 1,
        "float": 1.5,
        "bool": True,
        "null": None,
        3: "${V}",
        "nested": {"list": ["${V}", 2, False, None, {"${K}": "${V}"}]},
    }
    got = expand_env(doc, {"K": "key", "V": "val"})
    assert got == {
        "${K}": "val",
        "int": 1,
        "float": 1.5,
        "bool": True,
        "null": None,
        3: "val",
        "nested": {"list": ["val", 2, False, None, {"${K}": "val"}]},
    }
    assert got is not doc
    assert doc["${K}"] == "${V}"  # the input is not modified


def test_error_key_includes_list_indices() -> None:
    doc = {"routes": [{"path": "/a"}, {"path": "/${PREFIX}"}]}
    with pytest.raises(ConfigError) as info:
        expand_env(doc, {}, file="fixtures/gateway.yml")
    assert str(info.value) == "fixtures/gateway.yml: routes[1].path: required variable PREFIX is not set"
    assert info.value.key == "routes[1].path"


def test_error_at_top_level_string_has_no_key() -> None:
    with pytest.raises(ConfigError) as info:
        expand_env("${NOPE}", {})
    assert str(info.value) == "<config>: required variable NOPE is not set"
    assert info.value.key is None


def test_config_error_survives_pickling() -> None:
    err = ConfigError("f.yml", "a.b", "boom", variable="V")
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - round-tripping our own object
    assert (copy.file, copy.key, copy.variable, str(copy)) == ("f.yml", "a.b", "V", "f.yml: a.b: boom")


# --- hypothesis properties ---------------------------------------------------------------------------

_NAME_START = string.ascii_letters + "_"
names = st.builds(
    str.__add__, st.sampled_from(_NAME_START), st.text(_NAME_START + string.digits, max_size=15)
)
no_dollar = st.text().filter(lambda s: "$" not in s)
yamlish = st.one_of(st.text(), st.sampled_from(["[1, 2]", "a: b", "${X}", "$$", "}", "\\}", "{", "- x"]))


@settings(max_examples=100, deadline=None, database=None)
@given(no_dollar)
def test_text_without_dollar_is_unchanged(text: str) -> None:
    assert expand_env(text, {}) == text


@settings(max_examples=100, deadline=None, database=None)
@given(names, yamlish, no_dollar, no_dollar)
def test_reference_expands_to_exact_value(name: str, value: str, prefix: str, suffix: str) -> None:
    env = {"X": "should not appear", name: value}
    assert expand_env("${" + name + "}", env) == value
    assert expand_env(prefix + "${" + name + "}" + suffix, env) == prefix + value + suffix


@settings(max_examples=100, deadline=None, database=None)
@given(st.text(alphabet=st.sampled_from("${}:-?\\ab1_ ")) | st.text())
def test_doubled_dollars_round_trip(text: str) -> None:
    assert expand_env(text.replace("$", "$$"), {"a": "A", "b": "B"}) == text


# --- load_config --------------------------------------------------------------------------------------


class Server(msgspec.Struct, forbid_unknown_fields=True):
    port: int
    host: str = "127.0.0.1"
    debug: bool = False


class Route(msgspec.Struct, forbid_unknown_fields=True):
    path: str
    upstream: str


class Settings(msgspec.Struct, forbid_unknown_fields=True):
    server: Server
    routes: list[Route] = []
    name: str = "fechatter"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    path = write(tmp_path, "svc", text)
    with pytest.raises(ConfigError) as info:
        load_config("svc", Settings, env=env or {}, config_dir=tmp_path)
    assert info.value.file == str(path)
    assert "\n" not in str(info.value)
    return info.value


def test_load_expands_and_converts_types(tmp_path: Path) -> None:
    write(
        tmp_path,
        "svc",
        "server:\n  port: ${PORT:-8080}\n  debug: ${DEBUG}\n  host: ${HOST-0.0.0.0}\n"
        "routes:\n  - path: /api\n    upstream: ${UP}\n",
    )
    got = load_config("svc", Settings, env={"DEBUG": "true", "UP": "http://chat:1/"}, config_dir=tmp_path)
    assert got == Settings(
        server=Server(port=8080, host="0.0.0.0", debug=True),
        routes=[Route(path="/api", upstream="http://chat:1/")],
    )
    got = load_config("svc", Settings, env={"PORT": "9000", "DEBUG": "false", "UP": "u"}, config_dir=tmp_path)
    assert got.server.port == 9000
    assert got.server.debug is False


def test_load_unknown_key(tmp_path: Path) -> None:
    err = load_error(tmp_path, "server:\n  port: 1\n  prot: 2\n")
    assert err.key == "server.prot"
    assert str(err).endswith(": server.prot: unknown key")


def test_load_unknown_top_level_key(tmp_path: Path) -> None:
    err = load_error(tmp_path, "server:\n  port: 1\nextra: true\n")
    assert err.key == "extra"
    assert str(err).endswith(": extra: unknown key")


def test_load_wrong_type(tmp_path: Path) -> None:
    err = load_error(tmp_path, "server:\n  port: ${PORT}\n", {"PORT": "abc"})
    assert str(err) == f"{err.file}: server.port: expected int, got str 'abc'"


def test_load_wrong_type_in_list_item(tmp_path: Path) -> None:
    text = "server: {port: 1}\nroutes:\n  - {path: /a, upstream: u}\n  - {path: 5, upstream: u}\n"
    err = load_error(tmp_path, text)
    assert str(err) == f"{err.file}: routes[1].path: expected str, got int 5"


def test_load_bad_bool(tmp_path: Path) -> None:
    err = load_error(tmp_path, "server:\n  port: 1\n  debug: ${DEBUG}\n", {"DEBUG": "maybe"})
    assert str(err) == f"{err.file}: server.debug: expected bool, got str 'maybe'"


def test_load_missing_required_key(tmp_path: Path) -> None:
    err = load_error(tmp_path, "server:\n  host: h\n")
    assert str(err) == f"{err.file}: server.port: missing required key"
    err = load_error(tmp_path, "name: x\n")
    assert str(err) == f"{err.file}: server: missing required key"
    err = load_error(tmp_path, "server: {port: 1}\nroutes:\n  - {path: /a}\n")
    assert str(err) == f"{err.file}: routes[0].upstream: missing required key"


def test_load_expansion_error_names_file_key_and_variable(tmp_path: Path) -> None:
    err = load_error(tmp_path, "server:\n  port: ${PORT:?the gateway port}\n")
    assert str(err) == f"{err.file}: server.port: PORT: the gateway port"
    assert err.variable == "PORT"


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("absent", Settings, env={}, config_dir=tmp_path)
    assert info.value.file == str(tmp_path / "absent.yml")
    assert "not found" in str(info.value)


def test_load_yaml_syntax_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, "server:\n  port: 1\n bad: [\n")
    assert err.key is None
    assert "invalid YAML at line" in str(err)


def test_load_top_level_must_be_mapping(tmp_path: Path) -> None:
    err = load_error(tmp_path, "- 1\n- 2\n")
    assert "top level must be a mapping" in str(err)


def test_load_empty_file_is_empty_mapping(tmp_path: Path) -> None:
    class Optional(msgspec.Struct, forbid_unknown_fields=True):
        port: int = 1

    write(tmp_path, "svc", "")
    assert load_config("svc", Optional, env={}, config_dir=tmp_path) == Optional()
    write(tmp_path, "svc", "# only a comment\n")
    assert load_config("svc", Optional, env={}, config_dir=tmp_path) == Optional()
    err = load_error(tmp_path, "")
    assert str(err).endswith(": server: missing required key")


def test_config_dir_from_env_mapping(tmp_path: Path) -> None:
    write(tmp_path, "svc", "server: {port: 7}\n")
    env = {"FECHATTER_CONFIG_DIR": str(tmp_path)}
    assert config_path("svc", env=env) == tmp_path / "svc.yml"
    assert load_config("svc", Settings, env=env).server.port == 7


def test_explicit_config_dir_beats_env(tmp_path: Path) -> None:
    write(tmp_path, "svc", "server: {port: 7}\n")
    env = {"FECHATTER_CONFIG_DIR": str(tmp_path / "elsewhere")}
    assert load_config("svc", Settings, env=env, config_dir=tmp_path).server.port == 7


def test_default_config_dir_is_repo_fixtures() -> None:
    repo_root = Path(__file__).resolve().parents[2]
    assert config_path("gateway", env={}) == repo_root / "fixtures" / "gateway.yml"


def test_config_dir_override_from_process_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "svc", "server:\n  port: ${SVC_TEST_PORT:-8080}\n")
    monkeypatch.setenv("FECHATTER_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("SVC_TEST_PORT", "6000")
    assert config_path("svc") == tmp_path / "svc.yml"
    assert load_config("svc", Settings).server.port == 6000


def test_relative_config_dir_is_quoted_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", "svc", "server: {port: nope}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("svc", Settings, env={}, config_dir="conf")
    assert str(info.value) == "conf/svc.yml: server.port: expected int, got str 'nope'"


@pytest.mark.parametrize("setting", ["SSE_BUFFER_SIZE", "SSE_PING_SECONDS", "SSE_WRITE_TIMEOUT_SECONDS"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_notify_refuses_sse_settings_that_are_not_positive(setting: str, value: str) -> None:
    # A buffer of 0 would drop every stream at its first event, a ping interval of 0 would spin.
    env = {
        "NOTIFY_PORT": "6100",
        "DATABASE_URL": "postgresql://u:p@127.0.0.1/db",
        "NATS_URL": "nats://127.0.0.1:4222",
        "REDIS_URL": "redis://127.0.0.1:6379",
        "JWT_SECRET": "s" * 32,
        setting: value,
    }
    with pytest.raises(ConfigError) as raised:
        load_config("notify", NotifySettings, env=env)
    assert "sse." in str(raised.value)
