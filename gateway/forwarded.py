"""The client's address, with proxies in front of the gateway.

By default the address is the peer of the connection, and whatever X-Forwarded-For a client sent is
replaced (a client must not pick the address its rate limits count). When the peer is one of the
``trusted_proxies`` (a load balancer, a CDN), the client is the address that proxy saw: X-Forwarded-For is
read from the right, past every trusted address, and the first untrusted one is the client (entries
further left were written by the client itself and prove nothing). An entry may carry the port the proxy
saw (``203.0.113.7:51234``, ``[2001:db8::1]:443``); one that is not an address at all is never believed.
The address found, in its canonical spelling, replaces the peer for everything after it: rate limits, the
access log, and the X-Forwarded-For sent to the services.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from litestar.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
        ip = parse_hop(address)
        if ip is None:
            return False
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
        # The first hop that is not a trusted proxy must be an address: anything else (a name, "unknown",
        # an obfuscated RFC 7239 identifier, junk) proves nothing: the proxy that sent it stays the client.
        address = parse_hop(client)
        if address is None:
            return
        scope["client"] = (str(address), 0)


def parse_hop(hop: str) -> IPAddress | None:
    """The address of one X-Forwarded-For entry, or None when it is not one.

    Proxies write an address alone (``203.0.113.7``, ``2001:db8::1``), with the port they saw
    (``203.0.113.7:51234``, ``[2001:db8::1]:443``), or bracketed or quoted as in RFC 7239
    (``"[2001:db8::1]"``). The result is the canonical form (lower case, zeros compressed, an IPv4-mapped
    IPv6 address as IPv4, no zone), so that one client never gets two rate-limit counters by spelling."""
    text = hop.strip().strip('"').strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not _port_or_nothing(text[end + 1 :]):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not _port_or_nothing(":" + port):
            return None
    text = text.split("%", 1)[0]  # an IPv6 zone names an interface of the proxy, not the client
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _port_or_nothing(rest: str) -> bool:
    if not rest:
        return True
    port = rest[1:]
    return rest[0] == ":" and port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535
