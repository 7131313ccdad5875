"""The client's address, with proxies in front of the gateway.

By default the address is the peer of the connection, and whatever X-Forwarded-For a client sent is
replaced (a client must not pick the address its rate limits count). When the peer is one of the
``trusted_proxies`` (a load balancer, a CDN), the client is the address that proxy saw: X-Forwarded-For is
read from the right, past every trusted address, and the first untrusted one is the client (entries
further left were written by the client itself and prove nothing). The address found replaces the peer
for everything after it: rate limits, the access log, and the X-Forwarded-For sent to the services.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from litestar.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: list[str]) -> list[Network]:
    """CIDR blocks or single addresses; an entry may list several separated by commas (for env
    variables); empty entries are ignored. ``ValueError`` names a bad one."""
    networks: list[Network] = []
    for entry in entries:
        for item in entry.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"trusted_proxies: {item!r} is not an address or CIDR block") from None
    return networks


class ClientAddress:
    def __init__(self, trusted: list[str]) -> None:
        self.networks = parse_networks(trusted)
        self.enabled = bool(self.networks)
        self._trusted = lru_cache(maxsize=4096)(self._is_trusted)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def resolve(self, scope: Scope) -> None:
        """Replace ``scope["client"]`` with the forwarded client when the peer is a trusted proxy."""
        if not self.enabled:
            return
        peer = scope.get("client")
        if not peer or not self._trusted(peer[0]):
            return
        hops = [
            hop.strip()
            for key, value in scope["headers"]
            if key == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",")
        ]
        hops = [hop for hop in hops if hop]
        if not hops:
            return
        client = hops[0]
        for hop in reversed(hops):
            if not self._trusted(hop):
                client = hop
                break
        if not _valid(client):
            return
        scope["client"] = (client, 0)


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True
