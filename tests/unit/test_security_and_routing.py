"""Passwords, access tokens, log redaction and the gateway's routing table."""

from __future__ import annotations

import errno
import io
import logging
import re
import socket
import time
from collections.abc import Iterator

import asyncpg
import jwt
import pytest
import sqlalchemy.exc

from fechatter_core import logs
from fechatter_core.config import load_config
from fechatter_core.logs import redact
from fechatter_core.security import (
    TokenError,
    hash_password,
    issue_access_token,
    verify_access_token,
    verify_password,
)
from fechatter_core.settings import AuthSettings, GatewaySettings
from fechatter_core.web import dependency_unavailable
from gateway.routing import RoutingTable

SECRET = "unit-test-secret-of-at-least-32-bytes"


def auth(**overrides: object) -> AuthSettings:
    return AuthSettings(jwt_secret=SECRET, **overrides)  # type: ignore[arg-type]


# -- passwords ---------------------------------------------------------------------------------------


def test_password_hash_verifies_only_the_right_password() -> None:
    stored = hash_password("correct horse 1")
    assert stored.startswith("$argon2id$")
    assert "correct horse 1" not in stored
    assert verify_password(stored, "correct horse 1") is True
    assert verify_password(stored, "correct horse 2") is False
    assert verify_password(stored, "") is False


def test_same_password_hashes_differently_each_time() -> None:
    assert hash_password("same password") != hash_password("same password")


def test_missing_or_garbage_hash_never_verifies() -> None:
    # Bot users have no password hash; the dummy hash used for timing must not let anything in.
    assert verify_password(None, "correct horse 1") is False
    assert verify_password(None, "fechatter-timing-equaliser") is False
    assert verify_password("", "anything") is False
    assert verify_password("not-an-argon2-hash", "anything") is False


# -- access tokens -----------------------------------------------------------------------------------


def test_access_token_round_trip() -> None:
    settings = auth()
    before = int(time.time())
    token = issue_access_token(settings, user_id=42, workspace_id=7)
    claims = verify_access_token(settings, token)
    assert (claims.user_id, claims.workspace_id) == (42, 7)
    assert (
        before + settings.access_ttl_seconds
        <= claims.expires_at
        <= int(time.time()) + settings.access_ttl_seconds
    )


def test_expired_token_is_refused() -> None:
    settings = auth(access_ttl_seconds=-1)
    token = issue_access_token(settings, 1, 1)
    with pytest.raises(TokenError, match="expired"):
        verify_access_token(settings, token)


def test_tampered_token_is_refused() -> None:
    settings = auth()
    token = issue_access_token(settings, 1, 1)
    header, payload, signature = token.split(".")
    # Someone else's identity with the original signature.
    forged_payload = jwt.encode({"sub": "2", "wid": 1}, "y" * 32, algorithm="HS256").split(".")[1]
    with pytest.raises(TokenError):
        verify_access_token(settings, f"{header}.{forged_payload}.{signature}")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    with pytest.raises(TokenError):
        verify_access_token(settings, f"{header}.{payload}.{flipped}")
    with pytest.raises(TokenError):
        verify_access_token(settings, "not.a.token")


def test_token_signed_with_another_secret_is_refused() -> None:
    token = issue_access_token(AuthSettings(jwt_secret="another-secret-also-at-least-32-bytes"), 1, 1)
    with pytest.raises(TokenError, match="invalid"):
        verify_access_token(auth(), token)


def test_unsigned_token_is_refused() -> None:
    settings = auth()
    now = int(time.time())
    claims = {
        "sub": "1",
        "wid": 1,
        "iat": now,
        "exp": now + 60,
        "iss": settings.issuer,
        "aud": settings.audience,
        "typ": "access",
    }
    with pytest.raises(TokenError):
        verify_access_token(settings, jwt.encode(claims, None, algorithm="none"))


@pytest.mark.parametrize("typ", ["refresh", None])
def test_non_access_tokens_are_not_access_tokens(typ: str | None) -> None:
    settings = auth()
    now = int(time.time())
    claims = {
        "sub": "1",
        "wid": 1,
        "iat": now,
        "exp": now + 60,
        "iss": settings.issuer,
        "aud": settings.audience,
    }
    if typ is not None:
        claims["typ"] = typ
    token = jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
    with pytest.raises(TokenError, match="not an access token"):
        verify_access_token(settings, token)


def test_token_for_another_audience_is_refused() -> None:
    token = issue_access_token(auth(audience="someone-else"), 1, 1)
    with pytest.raises(TokenError):
        verify_access_token(auth(), token)


# -- log redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "secret", "kept"),
    [
        ("GET /sse?access_token=eyJhbGciOi.abc.def&last=3 200", "eyJhbGciOi.abc.def", "&last=3 200"),
        ("POST /api/refresh?refresh_token=r3fr35h 200", "r3fr35h", "POST /api/refresh?refresh_token="),
        ("headers: Authorization: Bearer xyz.123-abc", "xyz.123-abc", "Authorization: Bearer "),
        ('body {"email": "a@b.c", "password": "hunter22"}', "hunter22", '"email": "a@b.c"'),
        ('{"jwt_secret":"s3cr3t","port":1}', "s3cr3t", '"port":1'),
        (
            "connect failed: postgresql://postgres:pgsecret@127.0.0.1:5432/fechatter",
            "pgsecret",
            "postgres:[redacted]@127.0.0.1:5432/fechatter",
        ),
        ("nats://fechatter:natspw@127.0.0.1:4222", "natspw", "nats://fechatter:[redacted]@127.0.0.1:4222"),
        # The supervisor builds REDIS_URL as redis://:<password>@host, with no user name.
        (
            "redis error at redis://:redispw@127.0.0.1:6379/0",
            "redispw",
            "redis://:[redacted]@127.0.0.1:6379/0",
        ),
    ],
)
def test_redact_hides_secrets_and_keeps_the_rest(line: str, secret: str, kept: str) -> None:
    out = redact(line)
    assert secret not in out
    assert "[redacted]" in out
    assert kept in out


def test_redact_leaves_an_at_sign_in_a_path_alone() -> None:
    line = "GET http://127.0.0.1:6688/users/a@b.c 200"
    assert redact(line) == line


def test_redact_leaves_ordinary_text_alone() -> None:
    line = "GET /api/chat/1/messages?limit=50 200 in 3.2ms (user 7, http://127.0.0.1:6688)"
    assert redact(line) == line


@pytest.fixture
def logging_of_a_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """configure_logging as a service calls it, writing to a buffer; the test process's logging is put
    back afterwards (its handlers, levels and the module switches configure_logging turns off)."""
    stream = io.StringIO()
    monkeypatch.setattr(logging.root, "handlers", [])
    monkeypatch.setattr(logs, "_installed", None)
    for switch in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, switch, getattr(logging, switch))
    touched = [
        logging.root,
        *(logging.getLogger(name) for name in ("nats", "httpx", "httpcore", "sqlalchemy.engine", "chdb")),
    ]
    levels = [logger.level for logger in touched]
    logs.configure_logging("svc", "info", stream=stream)
    yield stream
    for logger, level in zip(touched, levels, strict=True):
        logger.setLevel(level)


def _service_handler_alone() -> None:
    """Drop the handlers pytest adds to the root logger for the test's own phase (after the fixture), so
    that the service's handler is the only one listening, as in a service."""
    logging.root.handlers[:] = logging.root.handlers[:1]


def test_a_fast_access_line_is_the_line_the_formatter_writes(
    logging_of_a_service: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    _service_handler_alone()
    access = logging.getLogger("fechatter.access")
    message = "127.0.0.1 GET /sse?access_token=eyJsecret 200 0.4ms"
    token = logs.request_id_var.set("req-1")
    try:
        access.info("%s", message)  # through a LogRecord and the formatter
        made = access.makeRecord
        records: list[logging.LogRecord] = []
        monkeypatch.setattr(
            access, "makeRecord", lambda *a, **k: records.append(made(*a, **k)) or records[-1]
        )
        logs.info_line(access, message)  # the fast way: no record at all
        assert records == []
    finally:
        logs.request_id_var.reset(token)
    logging.root.handlers[0].flush()
    slow, fast = logging_of_a_service.getvalue().splitlines()
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d ")
    assert stamp.match(slow) and stamp.match(fast)
    expected = "INFO svc [req-1] fechatter.access: 127.0.0.1 GET /sse?access_token=[redacted] 200 0.4ms"
    assert fast[20:] == slow[20:] == expected


def test_a_fast_access_line_goes_the_ordinary_way_when_something_else_listens(
    logging_of_a_service: io.StringIO,
) -> None:
    seen: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = seen.append  # type: ignore[method-assign]
    logging.root.addHandler(listener)
    logs.info_line(logging.getLogger("fechatter.access"), "GET / 200")
    logging.root.handlers[0].flush()
    assert [r.getMessage() for r in seen] == ["GET / 200"]
    assert logging_of_a_service.getvalue().endswith("fechatter.access: GET / 200\n")


def test_a_fast_access_line_follows_the_handler_when_it_is_changed(logging_of_a_service: io.StringIO) -> None:
    _service_handler_alone()
    handler = logging.root.handlers[0]
    handler.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
    logs.info_line(logging.getLogger("fechatter.access"), "GET / 200")
    handler.setLevel(logging.WARNING)
    logs.info_line(logging.getLogger("fechatter.access"), "GET /quiet 200")
    handler.flush()
    assert logging_of_a_service.getvalue() == "INFO|GET / 200\n"


# -- gateway routing ---------------------------------------------------------------------------------


def gateway_settings(**env: str) -> GatewaySettings:
    return load_config("gateway", GatewaySettings, env={"JWT_SECRET": SECRET, **env})


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/api/bot/x", "bot_server"),
        ("/api/bot", "bot_server"),
        ("/api/chat/1", "fechatter_server"),
        ("/api/signup", "fechatter_server"),
        ("/api", "fechatter_server"),
        ("/api/botany", "fechatter_server"),
        ("/api/event", "analytics_server"),
        ("/api/batch", "analytics_server"),
        ("/sse", "notify_server"),
        ("/events", "notify_server"),
        ("/online-users", "fechatter_server"),
        ("/apix", None),
        ("/", None),
        ("/index.html", None),
        ("/sse2", None),
    ],
)
def test_longest_prefix_wins(path: str, upstream: str | None) -> None:
    table = RoutingTable(gateway_settings())
    found = table.resolve(path)
    assert (found.upstream.name if found else None) == upstream


def test_default_upstream_addresses_come_from_the_fixture() -> None:
    table = RoutingTable(gateway_settings(BOT_UPSTREAM="http://10.0.0.5:7000/"))
    assert table.upstreams["bot_server"].servers == ["http://10.0.0.5:7000"]
    assert table.upstreams["fechatter_server"].servers == ["http://127.0.0.1:6688"]


def test_comma_separated_servers_are_used_round_robin() -> None:
    settings = gateway_settings(FECHATTER_UPSTREAM="http://a:1, http://b:2/ ,http://c:3,")
    route = RoutingTable(settings).resolve("/api/chat/1")
    assert route is not None
    upstream = route.upstream
    assert upstream.servers == ["http://a:1", "http://b:2", "http://c:3"]
    assert [upstream.pick() for _ in range(7)] == [
        "http://a:1",
        "http://b:2",
        "http://c:3",
        "http://a:1",
        "http://b:2",
        "http://c:3",
        "http://a:1",
    ]


def test_route_to_unknown_upstream_is_refused() -> None:
    settings = gateway_settings()
    settings.routes.append(type(settings.routes[0])(path="/x", upstream="nowhere"))
    with pytest.raises(ValueError, match="nowhere"):
        RoutingTable(settings)


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (TimeoutError(), True),  # a statement or a connection attempt that ran out of time
        (ConnectionRefusedError(), True),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), True),
        (sqlalchemy.exc.TimeoutError("QueuePool limit reached"), True),
        (sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionResetError()), True),
        (socket.gaierror(-2, "Name or service not known"), True),
        (OSError(errno.EHOSTUNREACH, "No route to host"), True),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed"), True),
        (asyncpg.InterfaceError("cannot perform operation: connection is closed"), True),
        (asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"), True),
        (asyncpg.exceptions.ProtocolViolationError("bad message"), False),
        (FileNotFoundError(errno.ENOENT, "No such file"), False),
        # Errors of the request or of the code stay what they are (a 500 is logged with its traceback).
        (ValueError("bad"), False),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False),
        (sqlalchemy.exc.IntegrityError("INSERT", {}, ValueError()), False),
        (KeyError("x"), False),
    ],
)
def test_a_dependency_that_is_down_is_told_from_a_bug(error: Exception, unavailable: bool) -> None:
    assert dependency_unavailable(error) is unavailable


def test_a_wrapped_timeout_is_found_through_the_chain() -> None:
    try:
        try:
            raise TimeoutError
        except TimeoutError as inner:
            raise RuntimeError("query failed") from inner
    except RuntimeError as outer:
        assert dependency_unavailable(outer)
