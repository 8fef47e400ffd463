"""The storage-endpoint check (SSRF): which addresses are refused, what the allowlist lets
through, with a resolver we control (a name that resolves to whatever we say)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from bayport.settings import Settings
from stores.endpoints import (
    EndpointAllowlist,
    EndpointRefused,
    EndpointUnresolved,
    check_endpoint,
)

NONE = EndpointAllowlist()


def resolver(*addresses: str) -> Any:
    def resolve(host: str, port: int, **_kw: Any) -> list[tuple[Any, ...]]:
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolve


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://127.0.0.1:9000", "loopback"),
        ("http://127.9.9.9", "loopback"),
        ("http://[::1]:9000", "loopback"),
        ("http://10.1.2.3", "private"),
        ("http://172.16.0.1", "private"),
        ("http://192.168.1.1", "private"),
        ("http://100.64.0.1", "non-public"),  # carrier-grade NAT
        ("http://0.0.0.0", "unspecified"),
        ("http://[::]", "unspecified"),
        ("http://224.0.0.1", "multicast"),
        ("http://240.0.0.1", "reserved"),
        ("http://[fe80::1]", "link-local"),
        ("http://[fc00::1]", "private"),
        ("http://[fd12:3456::1]", "private"),
        ("http://[::ffff:169.254.169.254]", "link-local"),  # IPv4-mapped
        ("http://[::ffff:127.0.0.1]", "loopback"),
        ("http://[2002:a9fe:a9fe::1]", "link-local"),  # 6to4 around 169.254.169.254
        ("http://2130706433/", "loopback"),  # 127.0.0.1 as one number
        ("http://0x7f.1/", "loopback"),
        ("https://127.0.0.1:443", "loopback"),
    ],
)
def test_non_public_addresses_are_refused(url: str, why: str) -> None:
    with pytest.raises(EndpointRefused) as info:
        check_endpoint(url, NONE)
    assert why in str(info.value)
    assert "BAYPORT_ALLOWED_PRIVATE_ENDPOINTS" in str(info.value)


@pytest.mark.parametrize(
    "url", ["ftp://s3.example.com", "file:///etc/passwd", "gopher://x", "s3.example.com", ""]
)
def test_only_http_urls(url: str) -> None:
    with pytest.raises(EndpointRefused, match="http"):
        check_endpoint(url, NONE, resolve=resolver("93.184.216.34"))


def test_credentials_in_the_url_and_bad_ports_are_refused() -> None:
    with pytest.raises(EndpointRefused, match="user name"):
        check_endpoint("http://user:pw@s3.example.com", NONE, resolve=resolver("93.184.216.34"))
    with pytest.raises(EndpointRefused, match="valid URL"):
        check_endpoint("http://s3.example.com:99999", NONE, resolve=resolver("93.184.216.34"))


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    public = resolver("52.216.0.1", "2600:1f18::1")
    check_endpoint("https://s3.example.com", NONE, resolve=public)
    # One private address among public ones is enough to refuse (DNS answers rotate).
    mixed = resolver("52.216.0.1", "169.254.169.254")
    with pytest.raises(EndpointRefused) as info:
        check_endpoint("https://metadata.example.com", NONE, resolve=mixed)
    assert "metadata.example.com resolves to 169.254.169.254, a link-local address" in str(
        info.value
    )


def test_a_name_that_does_not_resolve_is_refused() -> None:
    """Fail closed: unchecked now, the SDK would resolve it later to whatever it names then."""
    url = "https://nosuchaccount.blob.core.windows.net"
    with pytest.raises(EndpointUnresolved, match=r"^nosuchaccount\.blob\.core\.windows\.net does"):
        check_endpoint(url, NONE, resolve=resolver())


@pytest.mark.parametrize(
    ("entries", "url", "addresses"),
    [
        (["127.0.0.1"], "http://127.0.0.1:9000", ()),
        (["127.0.0.0/8"], "http://127.0.0.5:9000", ()),
        (["10.0.0.0/8"], "http://minio.internal", ("10.2.3.4",)),
        (["minio.internal"], "http://MINIO.internal.:9000", ("10.2.3.4",)),
        (["http://127.0.0.1:9000"], "http://127.0.0.1:1234", ()),
        (["::1"], "http://[::1]:9000", ()),
    ],
)
def test_the_allowlist_names_hosts_addresses_and_networks(
    entries: list[str], url: str, addresses: tuple[str, ...]
) -> None:
    allow = EndpointAllowlist.parse(entries)
    resolve = resolver(*addresses) if addresses else socket.getaddrinfo
    check_endpoint(url, allow, resolve=resolve)


def test_the_allowlist_allows_only_what_it_names() -> None:
    allow = EndpointAllowlist.parse(["127.0.0.1", "minio.internal"])
    with pytest.raises(EndpointRefused, match=r"169\.254\.169\.254"):
        check_endpoint("http://169.254.169.254", allow)
    with pytest.raises(EndpointRefused, match=r"10\.2\.3\.4"):
        check_endpoint("http://other.internal", allow, resolve=resolver("10.2.3.4"))


def test_dns_rebinding_is_caught_on_the_next_check() -> None:
    """Public when the config was made, the metadata service now: refused now."""
    answers = ["52.216.0.1"]

    def resolve(host: str, port: int, **_kw: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[0], port))]

    check_endpoint("https://rebind.example.com", NONE, resolve=resolve)
    answers[0] = "169.254.169.254"
    with pytest.raises(EndpointRefused, match="link-local"):
        check_endpoint("https://rebind.example.com", NONE, resolve=resolve)


def test_the_setting_reads_json_or_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAYPORT_ALLOWED_PRIVATE_ENDPOINTS", "127.0.0.1, 10.0.0.0/8,minio")
    assert Settings().allowed_private_endpoints == ["127.0.0.1", "10.0.0.0/8", "minio"]
    monkeypatch.setenv("BAYPORT_ALLOWED_PRIVATE_ENDPOINTS", '["127.0.0.1", "::1"]')
    assert Settings().allowed_private_endpoints == ["127.0.0.1", "::1"]
    monkeypatch.setenv("BAYPORT_ALLOWED_PRIVATE_ENDPOINTS", "")
    assert Settings().allowed_private_endpoints == []
