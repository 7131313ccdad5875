"""The routing table of gateway.yml.

Longest matching prefix wins; requests are spread round-robin across an upstream's servers. A server
that refused a connection is passed over for a few seconds (passive health checking), and one that the
active health checks (``gateway/health.py``) took out of rotation is passed over until it is back.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass

from fechatter_core.settings import GatewaySettings


class Upstream:
    def __init__(
        self, name: str, servers: list[str], down_seconds: float = 5.0, health_path: str = "/health"
    ) -> None:
        self.name = name
        self.health_path = health_path
        # One entry may list several servers separated by commas (handy for env variables).
        self.servers = [s.strip().rstrip("/") for entry in servers for s in entry.split(",") if s.strip()]
        if not self.servers:
            raise ValueError(f"upstream {name} has no servers")
        self.down_seconds = down_seconds
        self._down_until: dict[str, float] = {}
        self._counter = itertools.count()
        # Active health checks: instances out of rotation, and each one's run of probe results.
        self._out: set[str] = set()
        self._streak: dict[str, tuple[bool, int]] = {}

    def pick(self) -> str:
        return self.candidates()[0]

    def candidates(self) -> list[str]:
        """Every server, round-robin from the next one, those marked down or out of rotation last (still
        tried when every server is: a refused connection costs little, and one may be back)."""
        start = next(self._counter) % len(self.servers)
        order = self.servers[start:] + self.servers[:start]
        if not self._down_until and not self._out:
            return order
        now = time.monotonic()
        up = [s for s in order if s not in self._out and self._down_until.get(s, 0.0) <= now]
        return up + [s for s in order if s not in up]

    def mark_down(self, server: str) -> None:
        self._down_until[server] = time.monotonic() + self.down_seconds

    def mark_up(self, server: str) -> None:
        self._down_until.pop(server, None)

    def is_down(self, server: str) -> bool:
        return self._down_until.get(server, 0.0) > time.monotonic()

    def in_rotation(self, server: str) -> bool:
        return server not in self._out

    def record_probe(
        self, server: str, passed: bool, unhealthy_after: int, healthy_after: int
    ) -> bool | None:
        """Count one health probe; True when the server just came back into rotation, False when it was
        just taken out, None when nothing changed."""
        last, count = self._streak.get(server, (passed, 0))
        count = count + 1 if last == passed else 1
        self._streak[server] = (passed, count)
        if passed and server in self._out and count >= healthy_after:
            self._out.discard(server)
            self._down_until.pop(server, None)
            return True
        if not passed and server not in self._out and count >= unhealthy_after:
            self._out.add(server)
            return False
        return None


@dataclass(frozen=True)
class Route:
    path: str
    upstream: Upstream
    exact: bool
    stream: bool

    def matches(self, path: str) -> bool:
        if path == self.path:
            return True
        return not self.exact and path.startswith(self.path.rstrip("/") + "/")


class RoutingTable:
    def __init__(self, settings: GatewaySettings) -> None:
        self.upstreams = {
            name: Upstream(name, up.servers, settings.upstream_down_seconds, up.health_path)
            for name, up in settings.upstreams.items()
        }
        unknown = [r.upstream for r in settings.routes if r.upstream not in self.upstreams]
        if unknown:
            raise ValueError(f"routes name unknown upstreams: {sorted(set(unknown))}")
        self.routes = sorted(
            (Route(r.path, self.upstreams[r.upstream], r.exact, r.stream) for r in settings.routes),
            key=lambda r: len(r.path),
            reverse=True,
        )

    def resolve(self, path: str) -> Route | None:
        for route in self.routes:
            if route.matches(path):
                return route
        return None


# Metrics are labelled by a path template, never the raw path: ids become {id}, and past a fixed number
# of distinct templates (scanners probing random paths) everything else is counted as "other".
_ID_SEGMENT = re.compile(r"^(?:\d+|[0-9a-fA-F-]{16,}|[A-Za-z0-9_-]*\d[A-Za-z0-9_-]*)$")
MAX_TEMPLATES = 300


class PathTemplates:
    def __init__(self, limit: int = MAX_TEMPLATES) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def template(self, path: str) -> str:
        parts = ["{id}" if _ID_SEGMENT.match(p) else p for p in path.split("/")]
        template = "/".join(parts)[:120]
        if template in self.seen:
            return template
        if len(self.seen) >= self.limit:
            return "other"
        self.seen.add(template)
        return template
