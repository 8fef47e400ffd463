"""Which storage endpoints a storage config may name: public addresses only (no SSRF), unless
the operator allows a private one (BAYPORT_ALLOWED_PRIVATE_ENDPOINTS).

A storage config's endpoint is a URL that workers and the API call with credentials attached
and whose answers they relay. Pointing it at 169.254.169.254 (a cloud's instance metadata),
at 127.0.0.1 or at the private network would make Bayport a proxy into its own network. The
host is resolved and every address it resolves to must be public (a name that does not
resolve is refused); the check runs when a config is created and again each time a worker
opens its store (DNS may have changed since), on every host the SDK contacts (OSS's
`bucket.endpoint`). `EndpointPolicy.guard()` hands the same rule to the adapters, which
apply it to every connection they open (storage_adapters/netguard.py): the address checked
is the address connected to.

The allowlist is the operator's, one for the whole deployment: every workspace's configs
may name what it allows.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from storage_adapters.netguard import NetGuard, system_resolve

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

ALLOW_SETTING = "BAYPORT_ALLOWED_PRIVATE_ENDPOINTS"


class EndpointRefused(ValueError):
    """The endpoint is not a URL Bayport may call; the message says why and what to do."""


class EndpointUnresolved(EndpointRefused):
    """The endpoint's host does not resolve (now): refused, as nothing checked it."""


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
    resolve: Resolver = system_resolve,
) -> None:
    """Raise EndpointRefused unless `url` is an http(s) URL whose host resolves to public
    addresses only (or the allowlist names the host, or every non-public address it
    resolves to). A host that does not resolve is refused too: the SDK would resolve it
    again later, to whatever it names by then."""
    host, port = _host_and_port(url)
    if allowlist.allows_host(host):
        return
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # socket.gaierror: no such host (now)
        raise EndpointUnresolved(
            f"{host} does not resolve ({exc}); a storage endpoint must name a host that "
            "resolves to a public address"
        ) from exc
    if not infos:
        raise EndpointUnresolved(f"{host} resolves to no address")
    for info in infos:
        why = refusal(host, str(info[4][0]), allowlist)
        if why is not None:
            raise EndpointRefused(why)


def refusal(host: str, address: str, allowlist: EndpointAllowlist) -> str | None:
    """Why `host` may not be contacted at `address` (one of its addresses), or None: the
    address is public, or the operator allows the host or the address."""
    if allowlist.allows_host(host):
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{host} resolves to {address!r}, not an IP address"
    why = _not_public(ip)
    if why is None or allowlist.allows_address(ip):
        return None
    said = f"{ip} is {why}" if host.strip("[]") == str(ip) else f"{host} resolves to {ip}, {why}"
    return (
        f"{said}; storage endpoints must be public, an operator can allow this one "
        f"with {ALLOW_SETTING}"
    )


def contacted_urls(provider: str, endpoint: str, bucket: str) -> list[str]:
    """The endpoint and the URLs the provider's SDK contacts besides it: oss2 addresses a
    bucket as `bucket.endpoint host` (virtual-hosted) unless the endpoint is an IP address
    or localhost. S3 stores with an endpoint use path style, Azure's endpoint is the account
    URL itself."""
    urls = [endpoint]
    if provider == "oss" and bucket:
        try:
            parts = urlsplit(endpoint.strip())
            host = parts.hostname or ""
        except ValueError:
            return urls  # check_endpoint says what is wrong with it
        if host and not _oss_path_style(host):
            netloc = f"{bucket}.{host}" + (f":{parts.port}" if parts.port else "")
            urls.append(parts._replace(netloc=netloc).geturl())
    return urls


def _oss_path_style(host: str) -> bool:
    """oss2's rule (oss2.utils.is_ip_or_localhost): an IP address or localhost is addressed
    path style, `endpoint/bucket/key`."""
    if host == "localhost":
        return True
    try:
        socket.inet_pton(socket.AF_INET6, host)
        return True
    except OSError:
        pass
    try:
        socket.inet_aton(host)  # also what inet_aton reads as IPv4: "127.1", "0x7f.1"
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class EndpointPolicy:
    """The operator's endpoint policy as one value: checks a config's endpoint (when it is
    made and when a store opens), and guards every connection a store makes (`guard`).
    `resolve` is the machine's getaddrinfo; tests pass a resolver of their own."""

    allowlist: EndpointAllowlist = EndpointAllowlist()
    resolve: Resolver = system_resolve

    @classmethod
    def from_settings(
        cls, entries: Iterable[str], *, resolve: Resolver | None = None
    ) -> EndpointPolicy:
        return cls(EndpointAllowlist.parse(entries), resolve or system_resolve)

    def check(
        self, provider: str, endpoint: str | None, bucket: str, *, must_resolve: bool = True
    ) -> None:
        """EndpointRefused unless every URL a store of this config contacts is allowed. No
        endpoint: the provider's default, public one (its connections are guarded too).
        `must_resolve=False` lets a name that does not resolve (yet) pass: for an endpoint
        Bayport derived itself (an Azure account's URL in Azure's own domain), not one a
        user named."""
        if not endpoint:
            return
        for url in contacted_urls(provider, endpoint, bucket):
            try:
                check_endpoint(url, self.allowlist, resolve=self.resolve)
            except EndpointUnresolved:
                if must_resolve:
                    raise

    def refusal(self, host: str, address: str) -> str | None:
        return refusal(host, address, self.allowlist)

    def guard(self) -> NetGuard:
        return NetGuard(refusal=self.refusal, resolve=self.resolve)


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
    """IPv4 addresses an IPv6 address carries: mapped ::ffff:a.b.c.d, 6to4, Teredo, NAT64
    64:ff9b::a.b.c.d and the deprecated IPv4-compatible ::a.b.c.d."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour]
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: a translator to the IPv4 it embeds
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291, deprecated; :: and ::1 aside
# Non-public networks Python's ipaddress (3.11) counts as global, or names too vaguely.
_NOT_PUBLIC: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.IPv6Network("fec0::/10"), "a site-local address (deprecated, private use)"),
    (ipaddress.IPv4Network("100.64.0.0/10"), "a non-public, shared address (carrier-grade NAT)"),
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (ipaddress.IPv6Network("3fff::/20"), "a documentation address"),
    (ipaddress.IPv4Network("192.88.99.0/24"), "a 6to4 relay anycast address (deprecated)"),
)


def _kind(address: IPAddress) -> str | None:
    for network, why in _NOT_PUBLIC:
        if address.version == network.version and address in network:
            return why
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address in _IPV4_COMPATIBLE:
        return "an IPv4-compatible address (deprecated)"
    if isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped is not None or address in _NAT64
    ):
        return None  # judged by the IPv4 address it carries
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a non-public address"
    return None
