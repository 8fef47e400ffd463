"""Which storage endpoints a storage config may name: public addresses only (no SSRF), unless
the operator allows a private one (BAYPORT_ALLOWED_PRIVATE_ENDPOINTS).

A storage config's endpoint is a URL that workers and the API call with credentials attached
and whose answers they relay. Pointing it at 169.254.169.254 (a cloud's instance metadata),
at 127.0.0.1 or at the private network would make Bayport a proxy into its own network. The
host is resolved and every address it resolves to must be public; the check runs when a
config is created and again each time a worker opens its store (DNS may have changed since).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

ALLOW_SETTING = "BAYPORT_ALLOWED_PRIVATE_ENDPOINTS"


class EndpointRefused(ValueError):
    """The endpoint is not a URL Bayport may call; the message says why and what to do."""


@dataclass(frozen=True)
class EndpointAllowlist:
    """The operator's exceptions: host names, IP addresses and CIDR networks. An entry may
    also be given as a URL (`http://127.0.0.1:9000`): its host counts."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EndpointAllowlist:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip()
            if "://" in entry:
                entry = urlsplit(entry).hostname or ""
            entry = entry.strip("[]").rstrip(".").lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(hosts=frozenset(hosts), networks=tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host.rstrip(".").lower() in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks if net.version == address.version)


def check_endpoint(
    url: str,
    allowlist: EndpointAllowlist,
    *,
    resolve: Resolver = socket.getaddrinfo,
) -> None:
    """Raise EndpointRefused unless `url` is an http(s) URL whose host resolves to public
    addresses only (or the allowlist names the host, or every non-public address it
    resolves to). A host that does not resolve passes: nothing can be reached through it,
    and the store's own calls report it."""
    host, port = _host_and_port(url)
    if allowlist.allows_host(host):
        return
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):  # socket.gaierror: no such host (now)
        return
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        why = _not_public(address)
        if why is not None and not allowlist.allows_address(address):
            said = (
                f"{address} is {why}"
                if host == str(address)
                else f"{host} resolves to {address}, {why}"
            )
            raise EndpointRefused(
                f"{said}; storage endpoints must be public, an operator can allow this one "
                f"with {ALLOW_SETTING}"
            )


def _host_and_port(url: str) -> tuple[str, int]:
    url = url.strip()
    if any(ord(c) <= 0x20 or 0x7F <= ord(c) <= 0x9F for c in url):
        raise EndpointRefused("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EndpointRefused(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise EndpointRefused("must be an http:// or https:// URL")
    if not parts.hostname:
        raise EndpointRefused("names no host")
    if parts.username is not None or parts.password is not None:
        raise EndpointRefused("must not hold a user name or password")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _not_public(address: IPAddress) -> str | None:
    """Why `address` (or an IPv4 address embedded in it) is not a public one, or None."""
    for candidate in (address, *_embedded_ipv4(address)):
        why = _kind(candidate)
        if why is not None:
            return why
    return None


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped ::ffff:a.b.c.d, 6to4, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour]
    if address.teredo is not None:
        found.extend(address.teredo)
    return [a for a in found if a is not None]


def _kind(address: IPAddress) -> str | None:
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return None  # judged by the IPv4 address it maps
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a non-public address"
    return None
