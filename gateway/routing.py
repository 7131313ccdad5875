"""The routing table of gateway.yml.

Longest matching prefix wins; requests are spread round-robin across an upstream's servers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from fechatter_core.settings import GatewaySettings


@dataclass(frozen=True)
class Route:
    path: str
    upstream: str
    exact: bool

    def matches(self, path: str) -> bool:
        if path == self.path:
            return True
        return not self.exact and path.startswith(self.path.rstrip("/") + "/")


class Upstream:
    def __init__(self, name: str, servers: list[str]) -> None:
        self.name = name
        # One entry may list several servers separated by commas (handy for env variables).
        self.servers = [s.strip().rstrip("/") for entry in servers for s in entry.split(",") if s.strip()]
        if not self.servers:
            raise ValueError(f"upstream {name} has no servers")
        self._cycle = itertools.cycle(self.servers)

    def pick(self) -> str:
        return next(self._cycle)


class RoutingTable:
    def __init__(self, settings: GatewaySettings) -> None:
        self.upstreams = {name: Upstream(name, up.servers) for name, up in settings.upstreams.items()}
        unknown = [r.upstream for r in settings.routes if r.upstream not in self.upstreams]
        if unknown:
            raise ValueError(f"routes name unknown upstreams: {sorted(set(unknown))}")
        self.routes = sorted(
            (Route(r.path, r.upstream, r.exact) for r in settings.routes),
            key=lambda r: len(r.path),
            reverse=True,
        )

    def resolve(self, path: str) -> Upstream | None:
        for route in self.routes:
            if route.matches(path):
                return self.upstreams[route.upstream]
        return None
