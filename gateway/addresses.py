"""Which upstream addresses the gateway may connect to (pure functions on resolved addresses)."""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, Teredo, compatible)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:
        return ipaddress.IPv4Address(packed)  # deprecated IPv4-compatible ::a.b.c.d
    return None


def is_public_address(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses.

    Loopback, RFC 1918, CGNAT, link-local (cloud metadata at 169.254.169.254 and fd00:ec2::254),
    multicast, unspecified and reserved ranges are refused, including when an IPv6 address
    merely wraps one of them.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return False
        inner = embedded_ipv4(address)
        if inner is not None:
            return is_public_address(inner)
    return address.is_global and not address.is_multicast


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells literally, legacy IPv4 forms included (`127.1`)."""
    host = host.strip("[]")
    if "%" in host:  # a zone id never names a public address
        host = host.split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(part and part.isalnum() for part in host.split(".")) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def host_allowed(host: str, allow: list[str], deny: list[str]) -> bool:
    """Whether `host` passes the operator's lists: deny wins; an empty allow list allows all.

    Patterns are host names, optionally `*.` followed by a domain (which matches the domain's
    subdomains, not the domain itself); comparison ignores case and a trailing dot.
    """
    name = host.lower().rstrip(".")

    def matches(pattern: str) -> bool:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            return name.endswith(pattern[1:])
        return name == pattern

    if any(matches(p) for p in deny):
        return False
    return not allow or any(matches(p) for p in allow)
