"""Gateway pieces that need no running stack: tiers, path templates, replica choice, --replicas."""

from __future__ import annotations

from typing import Any

import pytest

from fechatter_core.config import ConfigError, load_config
from fechatter_core.settings import GatewaySettings
from fechatter_stack.supervisor import StackError, instance_name, parse_replicas
from gateway.forwarded import ClientAddress
from gateway.limits import classify
from gateway.routing import PathTemplates, RoutingTable

SECRET = "unit-test-secret-0123456789abcdef"


def settings(**env: str) -> GatewaySettings:
    return load_config("gateway", GatewaySettings, env={"JWT_SECRET": SECRET, **env})


@pytest.mark.parametrize(
    ("method", "path", "tier", "chat"),
    [
        ("POST", "/api/signin", "auth", None),
        ("POST", "/api/signup", "auth", None),
        ("POST", "/api/refresh", "auth", None),
        ("GET", "/api/signin", "read", None),
        ("POST", "/api/chat/42/messages", "send", "42"),
        ("GET", "/api/chat/42/messages", "read", None),
        ("PATCH", "/api/chat/42/messages/7", "read", None),
        ("POST", "/api/files", "upload", None),
        ("GET", "/api/users", "read", None),
        # Other spellings of the same routes reach the same handlers, so they count the same.
        ("POST", "/api//signup", "auth", None),
        ("POST", "/api/signup/", "auth", None),
        ("POST", "/api/chat/042/messages", "send", "42"),
        ("POST", "/api/chat/+42/messages/", "send", "42"),
        ("POST", "//api/files", "upload", None),
    ],
)
def test_requests_fall_into_tiers(method: str, path: str, tier: str, chat: str | None) -> None:
    found = classify(settings(), method, path)
    assert (found.name, found.chat_id) == (tier, chat)


def test_uploads_get_the_larger_body_limit() -> None:
    config = settings()
    assert classify(config, "POST", "/api/files").body_limit == config.body_limits.upload_bytes
    assert classify(config, "POST", "/api/chat/1/messages").body_limit == config.body_limits.default_bytes
    assert config.body_limits.upload_bytes > 10 * 1024 * 1024


def test_rate_limits_can_be_switched_off_by_variable() -> None:
    assert settings().rate_limits.enabled is True
    assert settings(GATEWAY_RATE_LIMITS="false").rate_limits.enabled is False


def test_path_templates_replace_ids_and_stay_bounded() -> None:
    templates = PathTemplates(limit=3)
    assert templates.template("/api/chat/12/messages") == "/api/chat/{id}/messages"
    assert templates.template("/api/chat/99/messages") == "/api/chat/{id}/messages"
    assert templates.template("/api/workspace/invites/a1B2c3") == "/api/workspace/invites/{id}"
    assert templates.template("/api/users") == "/api/users"
    assert templates.template("/wp-admin/setup") == "other"
    assert templates.template("/api/users") == "/api/users"


def test_a_replica_marked_down_is_skipped_until_its_time_is_up() -> None:
    config = settings(FECHATTER_UPSTREAM="http://a:1,http://b:2")
    route = RoutingTable(config).resolve("/api/users")
    assert route is not None
    upstream = route.upstream
    upstream.mark_down("http://a:1")
    assert [upstream.pick() for _ in range(4)] == ["http://b:2"] * 4
    # Still tried last, so a request has somewhere to go when every replica is marked down.
    assert upstream.candidates()[-1] == "http://a:1"
    upstream.mark_up("http://a:1")
    assert {upstream.pick() for _ in range(4)} == {"http://a:1", "http://b:2"}


def test_stream_routes_are_marked() -> None:
    table = RoutingTable(settings())
    assert table.resolve("/sse").stream is True  # type: ignore[union-attr]
    assert table.resolve("/api/users").stream is False  # type: ignore[union-attr]


def test_replicas_option() -> None:
    assert parse_replicas("chat=2,notify=3") == {"fechatter_server": 2, "notify_server": 3}
    assert parse_replicas("fechatter_server=2") == {"fechatter_server": 2}
    assert parse_replicas("") == {}
    for bad in ("bot=2", "chat", "chat=0", "chat=x"):
        with pytest.raises(StackError):
            parse_replicas(bad)
    assert [instance_name("notify_server", i) for i in range(3)] == [
        "notify_server",
        "notify_server-2",
        "notify_server-3",
    ]


def test_health_probes_take_an_instance_out_and_put_it_back() -> None:
    config = settings(FECHATTER_UPSTREAM="http://a:1,http://b:2")
    upstream = RoutingTable(config).upstreams["fechatter_server"]
    assert upstream.record_probe("http://a:1", False, 2, 2) is None  # one failure is not enough
    assert upstream.in_rotation("http://a:1")
    assert upstream.record_probe("http://a:1", False, 2, 2) is False
    assert not upstream.in_rotation("http://a:1")
    assert [upstream.pick() for _ in range(4)] == ["http://b:2"] * 4
    assert upstream.candidates()[-1] == "http://a:1"  # still the last resort
    assert upstream.record_probe("http://a:1", True, 2, 2) is None
    assert upstream.record_probe("http://a:1", False, 2, 2) is None  # the run of passes starts over
    assert upstream.record_probe("http://a:1", True, 2, 2) is None
    assert upstream.record_probe("http://a:1", True, 2, 2) is True
    assert {upstream.pick() for _ in range(4)} == {"http://a:1", "http://b:2"}


def test_health_check_settings_are_validated() -> None:
    assert settings().health_checks.enabled is True
    assert settings(GATEWAY_HEALTH_INTERVAL="0.5").health_checks.interval_seconds == 0.5
    assert settings(GATEWAY_HEALTH_CHECKS="false").health_checks.enabled is False
    with pytest.raises(ConfigError, match="interval_seconds"):
        settings(GATEWAY_HEALTH_INTERVAL="0")


def _scope(peer: str, forwarded: str | None = None) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return {"type": "http", "client": (peer, 5000), "headers": headers}


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # No trusted proxy sent it: the peer, whatever the header says.
        ("192.0.2.1", "203.0.113.5", "192.0.2.1"),
        # A trusted proxy: the rightmost address that is not itself trusted.
        ("10.0.0.2", "203.0.113.5", "203.0.113.5"),
        ("10.0.0.2", "198.51.100.1, 203.0.113.5", "203.0.113.5"),
        ("10.0.0.2", "198.51.100.1, 203.0.113.5, 10.0.0.9", "203.0.113.5"),
        ("10.0.0.2", "10.0.0.7, 10.0.0.9", "10.0.0.7"),
        ("10.0.0.2", "2001:db8::1", "2001:db8::1"),
        ("::ffff:10.0.0.2", "203.0.113.5", "203.0.113.5"),
        ("127.0.0.5", "203.0.113.5", "203.0.113.5"),
        # Nothing usable: the proxy stays the client.
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "", "10.0.0.2"),
        ("10.0.0.2", "unknown", "10.0.0.2"),
        # Entries with the port the proxy saw, bracketed or quoted IPv6: the address alone.
        ("10.0.0.2", "203.0.113.7:51234", "203.0.113.7"),
        ("10.0.0.2", "[2001:db8::1]:443", "2001:db8::1"),
        ("10.0.0.2", '"[2001:DB8:0::1]"', "2001:db8::1"),
        ("10.0.0.2", "198.51.100.1:80, 203.0.113.7:51234, 10.0.0.9:3000", "203.0.113.7"),
        ("10.0.0.2", "::ffff:203.0.113.7", "203.0.113.7"),
        ("10.0.0.2", "fe80::1%eth0", "fe80::1"),
        # A trusted proxy with a port is still trusted, and passed over.
        ("10.0.0.2", "203.0.113.7, [::ffff:10.0.0.9]:80", "203.0.113.7"),
        # Garbage, or an address with a bad port, is never believed (nor anything left of it).
        ("10.0.0.2", "203.0.113.7, 203.0.113.8:99999", "10.0.0.2"),
        ("10.0.0.2", "203.0.113.7, 203.0.113.8:http", "10.0.0.2"),
        ("10.0.0.2", "203.0.113.7, [2001:db8::1", "10.0.0.2"),
        ("10.0.0.2", "203.0.113.7, [2001:db8::1]:", "10.0.0.2"),
        ("10.0.0.2", "203.0.113.7, _hidden", "10.0.0.2"),
        ("10.0.0.2", "203.0.113.7, 203.0.113.8:1:2", "10.0.0.2"),
        ("10.0.0.2", "203.0.113.7, 999.1.1.1:80", "10.0.0.2"),
    ],
)
def test_the_client_address_comes_from_x_forwarded_for_only_behind_trusted_proxies(
    peer: str, forwarded: str | None, client: str
) -> None:
    config = settings(GATEWAY_TRUSTED_PROXIES="10.0.0.0/8, 127.0.0.5")
    scope = _scope(peer, forwarded)
    ClientAddress(config.trusted_proxies).resolve(scope)  # type: ignore[arg-type]
    assert scope["client"][0] == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    config = settings()
    assert config.trusted_proxies == [""]
    scope = _scope("10.0.0.2", "203.0.113.5")
    ClientAddress(config.trusted_proxies).resolve(scope)  # type: ignore[arg-type]
    assert scope["client"][0] == "10.0.0.2"


def test_a_bad_trusted_proxy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="trusted_proxies"):
        settings(GATEWAY_TRUSTED_PROXIES="10.0.0.0/8, not-a-network")
