"""YAML configuration loading with environment-variable expansion.

Each service reads ``<config dir>/<name>.yml``; the directory is ``$FECHATTER_CONFIG_DIR`` when set,
otherwise ``fixtures/`` at the repository root. The document is parsed with ``yaml.safe_load``, string
values are expanded against the environment, and the result is converted into a msgspec Struct with
``strict=False`` so that ``"8080"`` coming from a variable still fills an ``int`` field.

Expansion syntax (applies to string *values* only; mapping keys and non-string scalars are untouched):

``${VAR}``
    The value of ``VAR``. Unset is an error; set-but-empty gives ``""``.
``${VAR:-default}`` / ``${VAR-default}``
    ``default`` when ``VAR`` is unset or empty / only when unset.
``${VAR:?message}`` / ``${VAR?message}``
    An error carrying ``message`` when ``VAR`` is unset or empty / only when unset.
``$$``
    A literal ``$``, so ``$${HOME}`` yields the text ``${HOME}``.
``$`` followed by anything other than ``{`` or ``$``
    Kept literally (``"cost $5"`` stays as is).

Variable names match ``[A-Za-z_][A-Za-z0-9_]*``; anything else after ``${`` (``${}``, ``${1abc}``,
``${A:x}``) or a reference without its closing ``}`` is reported as malformed.

Inside a default or message (the "word"):

* references and ``$$`` work as above, so ``${A:-${B:-x}}`` and ``${URL:-http://h:1/x}`` behave as
  expected; a word is only evaluated when it is used, so ``${A:-${B}}`` does not need ``B`` when ``A``
  is set (syntax errors are still reported);
* the word ends at the first ``}`` -- braces are not balanced -- so a literal ``}`` is written ``\\}``;
* every other backslash is literal (``C:\\dir`` needs no doubling). The one consequence is that a word
  cannot end with a backslash.

Outside ``${...}`` only ``$`` is special: ``\\}`` and lone ``}`` are ordinary text there.

Substituted values are inserted verbatim: they are never re-parsed as YAML nor expanded again, so a
variable holding ``"[1, 2]"`` or ``"${OTHER}"`` produces exactly that string.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

__all__ = ["ConfigError", "config_path", "expand_env", "load_config"]

T = TypeVar("T")

CONFIG_DIR_VAR = "FECHATTER_CONFIG_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[1]
_DEFAULT_CONFIG_DIR = _REPO_ROOT / "fixtures"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SNIPPET_LIMIT = 40


class ConfigError(Exception):
    """A configuration problem, rendered as ``"<file>: <key>: <message>"`` on a single line."""

    def __init__(self, file: str, key: str | None, message: str, *, variable: str | None = None) -> None:
        self.file = file
        self.key = key or None
        self.variable = variable
        self.message = " ".join(message.split())
        super().__init__(self.file, self.key, self.message, variable)

    def __str__(self) -> str:
        parts = [self.file, self.key, self.message] if self.key else [self.file, self.message]
        return ": ".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickling replays ``args`` positionally, which would lose the keyword-only variable.
        return (_rebuild_error, (self.file, self.key, self.message, self.variable))


def _rebuild_error(file: str, key: str | None, message: str, variable: str | None) -> ConfigError:
    return ConfigError(file, key, message, variable=variable)


def _snippet(text: str) -> str:
    return text if len(text) <= _SNIPPET_LIMIT else text[: _SNIPPET_LIMIT - 3] + "..."


class _Expander:
    """Recursive-descent scanner over one string value."""

    def __init__(self, text: str, env: Mapping[str, str], file: str, key: str) -> None:
        self.text = text
        self.env = env
        self.file = file
        self.key = key

    def _error(self, message: str, variable: str | None = None) -> ConfigError:
        return ConfigError(self.file, self.key, message, variable=variable)

    def expand(self) -> str:
        # A syntax-only pass first, so a malformed value is reported as such even when evaluating it
        # would have hit a missing variable earlier in the string.
        self._scan(0, in_word=False, active=False)
        result, _ = self._scan(0, in_word=False, active=True)
        return result

    def _scan(self, pos: int, *, in_word: bool, active: bool) -> tuple[str, int]:
        """Expand from ``pos``; inside a word stop at (without consuming) the closing ``}``."""
        text = self.text
        out: list[str] = []
        end = len(text)
        while pos < end:
            ch = text[pos]
            if ch == "$":
                nxt = text[pos + 1 : pos + 2]
                if nxt == "$":
                    out.append("$")
                    pos += 2
                elif nxt == "{":
                    value, pos = self._reference(pos, active=active)
                    out.append(value)
                else:
                    out.append("$")
                    pos += 1
            elif in_word and ch == "}":
                break
            elif in_word and ch == "\\" and text[pos + 1 : pos + 2] == "}":
                out.append("}")
                pos += 2
            else:
                out.append(ch)
                pos += 1
        return "".join(out), pos

    def _reference(self, start: int, *, active: bool) -> tuple[str, int]:
        text = self.text
        match = _NAME.match(text, start + 2)
        if match is None:
            close = text.find("}", start)
            shown = text[start : close + 1] if close != -1 else text[start:]
            raise self._error(f"malformed variable reference '{_snippet(shown)}'")
        name = match.group()
        pos = match.end()

        if text.startswith("}", pos):
            if not active:
                return "", pos + 1
            if name not in self.env:
                raise self._error(f"required variable {name} is not set", name)
            return self.env[name], pos + 1

        op = text[pos : pos + 2] if text.startswith(":", pos) else text[pos : pos + 1]
        if op not in (":-", "-", ":?", "?"):
            if pos >= len(text):
                raise self._malformed_unterminated(start, name)
            close = text.find("}", pos)
            shown = text[start : close + 1] if close != -1 else text[start:]
            raise self._error(f"malformed variable reference '{_snippet(shown)}'", name)
        pos += len(op)

        value = self.env.get(name)
        missing = value is None or (op.startswith(":") and value == "")
        word, pos = self._scan(pos, in_word=True, active=active and missing)
        if pos >= len(text):
            raise self._malformed_unterminated(start, name)
        pos += 1  # the closing brace

        if not active:
            return "", pos
        if not missing:
            assert value is not None
            return value, pos
        if op.endswith("-"):
            return word, pos
        if word:
            raise self._error(f"{name}: {word}", name)
        state = "is not set" if value is None else "is empty"
        raise self._error(f"{name} {state}", name)

    def _malformed_unterminated(self, start: int, name: str) -> ConfigError:
        shown = _snippet(self.text[start:])
        return self._error(f"malformed variable reference '{shown}' (missing closing '}}')", name)


def _child_key(parent: str, child: object) -> str:
    return f"{parent}.{child}" if parent else str(child)


def expand_env(value: object, env: Mapping[str, str], *, file: str = "<config>", key: str = "") -> object:
    """Return a copy of a parsed YAML document with variables in string values expanded."""
    if isinstance(value, str):
        return _Expander(value, env, file, key).expand()
    if isinstance(value, dict):
        return {k: expand_env(v, env, file=file, key=_child_key(key, k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [expand_env(v, env, file=file, key=f"{key}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    return value


def config_path(
    name: str, *, env: Mapping[str, str] | None = None, config_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Where ``load_config(name)`` reads from; the path is kept as given so errors can quote it."""
    if config_dir is None:
        environ = os.environ if env is None else env
        # An empty override is treated as unset, matching how shells usually clear a variable.
        config_dir = environ.get(CONFIG_DIR_VAR) or _DEFAULT_CONFIG_DIR
    return Path(config_dir) / f"{name}.yml"


def _display(path: Path) -> str:
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def _read_document(path: Path, shown: str) -> dict[Any, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(shown, None, "config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(shown, None, f"cannot read config file: {exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        where = ""
        if exc.problem_mark is not None:
            where = f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
        raise ConfigError(shown, None, f"invalid YAML{where}: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(shown, None, f"invalid YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(shown, None, f"top level must be a mapping, got {type(doc).__name__}")
    return doc


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>.*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>.*)`$", re.DOTALL)
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_NOT_FOUND = object()


def _lookup(doc: object, path: str) -> object:
    """Find the value msgspec complained about, or ``_NOT_FOUND`` when the path is ambiguous."""
    pos = 0
    node = doc
    while pos < len(path):
        seg = _SEGMENT.match(path, pos)
        if seg is None or seg.group(2) == "...":
            return _NOT_FOUND
        pos = seg.end()
        if seg.group(1) is not None:
            if not isinstance(node, dict) or seg.group(1) not in node:
                return _NOT_FOUND
            node = node[seg.group(1)]
        else:
            index = int(seg.group(2))
            if not isinstance(node, list) or index >= len(node):
                return _NOT_FOUND
            node = node[index]
    return node


def _validation_error(exc: msgspec.ValidationError, doc: object, shown: str) -> ConfigError:
    match = _AT.match(str(exc))
    assert match is not None  # the pattern accepts any string
    msg, path = match.group("msg"), match.group("path") or ""
    key = path.removeprefix(".")
    if found := _UNKNOWN.match(msg):
        return ConfigError(shown, _child_key(key, found.group("field")), "unknown key")
    if found := _MISSING.match(msg):
        return ConfigError(shown, _child_key(key, found.group("field")), "missing required key")
    text = msg.replace("`", "")
    text = text[:1].lower() + text[1:]
    value = _lookup(doc, path)
    if isinstance(value, str | int | float | bool | type(None)):
        shown_value = _snippet(repr(value))
        if text.endswith(f"got {type(value).__name__}"):
            text = f"{text} {shown_value}"
        elif text.startswith("expected") and " got " not in text:
            # Constraint failures ("expected int >= 1") do not say what was found.
            text = f"{text}, got {shown_value}"
    return ConfigError(shown, key or None, text)


def load_config(
    name: str,
    settings_type: type[T],
    *,
    env: Mapping[str, str] | None = None,
    config_dir: str | os.PathLike[str] | None = None,
) -> T:
    """Read ``<config_dir>/<name>.yml``, expand variables and convert it into ``settings_type``."""
    environ: Mapping[str, str] = os.environ if env is None else env
    path = config_path(name, env=environ, config_dir=config_dir)
    shown = _display(path)
    doc = expand_env(_read_document(path, shown), environ, file=shown)
    try:
        return msgspec.convert(doc, settings_type, strict=False)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, doc, shown) from exc
