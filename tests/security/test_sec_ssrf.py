"""SSRF through storage endpoints (issue 20 items 1, 2, 3, 13): the host an SDK actually
contacts (OSS's `bucket.endpoint`), redirects, DNS that does not resolve or rebinds between
the check and the connection, and the addresses the private-address check missed.

The internal target is a probe server on 127.0.0.1 that answers like a metadata service;
the allowlist never names it. Names resolve through a fake DNS (socket.getaddrinfo patched:
the machine's resolver, for the SDKs and Bayport alike), since no real DNS is reachable here.
"""

from __future__ import annotations

import http.server
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crypto.secretbox import SecretBox
from metadata.models import StorageConfig
from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.registry import open_store
from stores.endpoints import EndpointAllowlist, EndpointRefused, check_endpoint
from stores.resolver import ConfigStores
from tests.conftest import make_settings
from tests.probes import RecordingServer
from tests.support import api_client, new_workspace

ALLOW = "BAYPORT_ALLOWED_PRIVATE_ENDPOINTS"
# What the probe hands out: a cloud's instance credentials.
LEAKED = b'{"AccessKeyId": "ASIA-LEAKED", "SecretAccessKey": "instance-secret"}'
PUBLIC = "93.184.216.34"  # a public address (nothing is ever sent to it here)
ALLOWED = "127.0.0.2"  # "the operator's storage server": allowed by address; the probe is not


def _metadata(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(LEAKED)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(LEAKED)


@pytest.fixture
def probe() -> Iterator[RecordingServer]:
    """The internal service (169.254.169.254's stand-in)."""
    server = RecordingServer(_metadata)
    yield server
    server.close()


@pytest.fixture
def hostile(probe: RecordingServer) -> Iterator[RecordingServer]:
    """A storage endpoint that answers everything with a redirect to the probe."""

    def redirect(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", f"{probe.url}/latest/meta-data/iam/credentials")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server = RecordingServer(redirect)
    yield server
    server.close()


class FakeDNS:
    """socket.getaddrinfo for the names a test gives (`names[name]`: the addresses, or a
    list of answers given in turn, the last one repeated); other `.test` names do not
    resolve; everything else (IP literals, localhost) is the real resolver's."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.names: dict[str, list[list[str]]] = {}
        self.lookups: dict[str, int] = {}

    def set(self, name: str, *answers: list[str]) -> None:
        self.names[name] = list(answers)

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0, *a: Any) -> Any:
        name = str(host).rstrip(".").lower()
        if name in self.names:
            self.lookups[name] = self.lookups.get(name, 0) + 1
            answers = self.names[name]
            addresses = answers.pop(0) if len(answers) > 1 else answers[0]
            families = {True: socket.AF_INET6, False: socket.AF_INET}
            return [
                (families[":" in ip], socket.SOCK_STREAM, 6, "", (ip, int(port or 0)))
                for ip in addresses
            ]
        if name.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.real(host, port, family, type, *a)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    # check_endpoint's default resolver is the machine's too (the code before this fix bound
    # socket.getaddrinfo itself as the default, so it is replaced there as well).
    defaults = check_endpoint.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "resolve", fake)
    return fake


def _policy(*allowed: str) -> Any:
    """The operator's endpoint policy allowing `allowed` (imported here: this file also runs
    against the code before the policy existed, to show its attacks succeed there)."""
    from stores.endpoints import EndpointPolicy

    return EndpointPolicy(EndpointAllowlist.parse(allowed))


def _creds(provider: str) -> dict[str, str]:
    if provider == "azure":
        return {"account_name": "devstoreaccount1", "account_key": "a2V5a2V5a2V5"}
    return {"accesskey_id": "AKIDEXAMPLE", "accesskey_secret": "secret-secret"}


def _config(box: SecretBox, provider: str, endpoint: str, bucket: str) -> StorageConfig:
    return StorageConfig(
        workspace_id="w" * 32,
        name="src",
        provider=provider,
        endpoint=endpoint,
        bucket_name=bucket,
        credentials_encrypted=box.seal(_creds(provider)),
    )


def _stores(tmp_path: Path, allowed: list[str]) -> tuple[ConfigStores, SecretBox]:
    """A worker's stores (its resolver is the machine's: the fake DNS)."""
    settings = make_settings(tmp_path / "bayport", allowed_private_endpoints=allowed)
    box = SecretBox(settings.fernet_keys())
    return ConfigStores(settings, box), box


def _every_call(store: ObjectStore) -> list[StorageError]:
    """What a worker does with a store: list, head, read; each one's error."""
    errors: list[StorageError] = []
    for call in (
        lambda: store.list_page("", limit=10),
        lambda: store.head("k"),
        lambda: store.read("k", max_size=1 << 20),
    ):
        try:
            call()
        except StorageError as exc:
            errors.append(exc)
    return errors


# -- 1. OSS contacts bucket.endpoint ----------------------------------------------------


def test_sec_ssrf_worker_refuses_an_oss_bucket_host_that_resolves_inside(
    tmp_path: Path, dns: FakeDNS, probe: RecordingServer
) -> None:
    """Endpoint http://attacker.test (public), bucket "latest": oss2 contacts
    latest.attacker.test, which resolves to the internal service. The worker's store open
    refuses it, naming the host oss2 would contact; nothing reaches the probe."""
    dns.set("attacker.test", [PUBLIC])
    dns.set("latest.attacker.test", ["127.0.0.1"])
    stores, box = _stores(tmp_path, [])
    config = _config(box, "oss", f"http://attacker.test:{probe.port}", "latest")
    with pytest.raises(StorageError) as info:
        try:
            store = stores.for_config(config)
            _every_call(store)
        finally:
            assert probe.hits == []
        raise AssertionError("the store opened and its calls went through")
    assert info.value.kind is ErrorKind.INVALID_CONFIG and not info.value.transient
    assert "latest.attacker.test resolves to 127.0.0.1, a loopback address" in str(info.value)
    assert ALLOW in str(info.value)
    assert probe.hits == []


def test_sec_ssrf_oss_connection_guard_covers_the_bucket_host(
    dns: FakeDNS, probe: RecordingServer
) -> None:
    """Without the open-time check (a store opened from a spec), the connection guard still
    refuses the bucket host at connect time: each call fails, permanently, and names it."""
    dns.set("attacker.test", [PUBLIC])
    dns.set("latest.attacker.test", ["127.0.0.1"])
    policy = _policy()
    spec = StorageSpec(
        "oss",
        "latest",
        endpoint=f"http://attacker.test:{probe.port}",
        credentials=_creds("oss"),
        guard=policy.guard(),
    )
    errors = _every_call(open_store(spec, timeout=5))
    assert len(errors) == 3
    for error in errors:
        assert error.kind is ErrorKind.INVALID_CONFIG and not error.transient
        assert "connection to latest.attacker.test (127.0.0.1) refused" in str(error)
    assert probe.hits == []


def test_sec_ssrf_oss_virtual_hosted_bucket_works_through_the_guard(
    dns: FakeDNS, probe: RecordingServer, tmp_path: Path
) -> None:
    """The guard connects to the address it checked and keeps the name for the Host header:
    OSS's virtual-hosted addressing still works (the OSS test server on an allowed address)."""
    import oss2

    from tests.oss_server import OssTestServer

    server = OssTestServer(tmp_path / "oss", "ak", "sk", host=ALLOWED, domain="oss.test").start()
    try:
        port = server.endpoint.rsplit(":", 1)[1]
        oss2.Bucket(oss2.Auth("ak", "sk"), server.endpoint, "photos").create_bucket()
        dns.set("oss.test", [ALLOWED])
        dns.set("photos.oss.test", [ALLOWED])
        policy = _policy(ALLOWED)
        endpoint = f"http://oss.test:{port}"
        policy.check("oss", endpoint, "photos")  # as the API and the store open do
        spec = StorageSpec(
            "oss",
            "photos",
            endpoint=endpoint,
            credentials={"accesskey_id": "ak", "accesskey_secret": "sk"},
            guard=policy.guard(),
        )
        store = open_store(spec, timeout=5)
        store.put("a/k", b"hello")
        assert store.read("a/k", max_size=100).data == b"hello"
        assert [o.key for o in store.list_page("a/").objects] == ["a/k"]
        assert dns.lookups["photos.oss.test"] >= 2  # the bucket host, resolved by the guard
        assert ("GET", "photos", "a/k") in server.requests
    finally:
        server.stop()
    assert probe.hits == []


# -- 2. redirects ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["oss", "azure", "s3"])
def test_sec_ssrf_no_adapter_follows_a_redirect(
    provider: str, hostile: RecordingServer, probe: RecordingServer
) -> None:
    """A hostile endpoint answers every request `302 Location: <the probe>`: no adapter
    follows it (the probe gets nothing, the credentials are never read), each call fails
    with a permanent error that says so, and botocore does not recurse through redirects."""
    endpoint = hostile.url + ("/devstoreaccount1" if provider == "azure" else "")
    spec = StorageSpec(provider, "photos", endpoint=endpoint, credentials=_creds(provider))
    store = open_store(spec, timeout=5)
    errors = _every_call(store)
    assert probe.hits == []
    # Three calls, each at most: the lean path's request, then boto3's (S3).
    assert len(hostile.hits) <= 6, f"{len(hostile.hits)} requests: {hostile.hits[:3]}"
    assert len(errors) == 3
    for error in errors:
        assert error.kind is ErrorKind.INVALID_CONFIG and not error.transient, error
        assert f"HTTP 302, a redirect to 127.0.0.1:{probe.port}" in str(error), error
        assert "redirects are not followed" in str(error)


def test_sec_ssrf_worker_store_follows_no_redirect(
    tmp_path: Path, dns: FakeDNS, hostile: RecordingServer, probe: RecordingServer
) -> None:
    """The same through a worker's store (guarded; the hostile server allowed by name): the
    attacker's dataset never gets the instance credentials."""
    dns.set("storage.test", ["127.0.0.1"])
    stores, box = _stores(tmp_path, ["storage.test"])
    store = stores.for_config(_config(box, "s3", f"http://storage.test:{hostile.port}", "b"))
    with pytest.raises(StorageError) as info:
        store.read("k", max_size=1 << 20)
    assert probe.hits == []
    assert len(hostile.hits) <= 2, f"{len(hostile.hits)} requests"
    assert "redirects are not followed" in str(info.value)


# -- 3. DNS: fail closed, re-check and pin -----------------------------------------------------


def test_sec_ssrf_dns_rebinding_after_the_open_check_is_refused_at_connect(
    tmp_path: Path, dns: FakeDNS, probe: RecordingServer
) -> None:
    """rebind.test resolves to an allowed address when the worker opens the store, and to
    the internal service when the SDK connects: the connection is refused."""
    dns.set("rebind.test", [ALLOWED])
    stores, box = _stores(tmp_path, [ALLOWED])
    store = stores.for_config(_config(box, "s3", f"http://rebind.test:{probe.port}", "b"))
    dns.set("rebind.test", ["127.0.0.1"])
    errors = _every_call(store)
    assert probe.hits == []
    assert len(errors) == 3
    for error in errors:
        assert error.kind is ErrorKind.INVALID_CONFIG and not error.transient
        assert "connection to rebind.test (127.0.0.1) refused" in str(error)
        assert "127.0.0.1 is a loopback address" not in str(error) or ALLOW in str(error)


@pytest.mark.parametrize("provider", ["s3", "azure", "oss"])
def test_sec_ssrf_a_connection_goes_to_the_address_checked(
    provider: str, dns: FakeDNS, probe: RecordingServer
) -> None:
    """The guard resolves once and connects to the address it checked: a name answering an
    allowed address to that lookup and the probe's to any later one (the SDK resolving
    again) never reaches the probe. Nothing listens on the allowed address: connection
    refused, a transient error."""
    dns.set("pin.test", [ALLOWED], ["127.0.0.1"])
    policy = _policy(ALLOWED)
    endpoint = f"http://pin.test:{probe.port}" + (
        "/devstoreaccount1" if provider == "azure" else ""
    )
    bucket = "photos"
    if provider == "oss":  # path style needs an IP endpoint; pin.test is virtual-hosted
        dns.set("photos.pin.test", [ALLOWED], ["127.0.0.1"])
    spec = StorageSpec(
        provider, bucket, endpoint=endpoint, credentials=_creds(provider), guard=policy.guard()
    )
    store = open_store(spec, timeout=5)
    with pytest.raises(StorageError) as info:
        store.list_page("", limit=1)
    assert info.value.kind is ErrorKind.UNAVAILABLE, info.value
    assert probe.hits == []


def test_sec_ssrf_unresolvable_endpoint_is_refused_in_the_worker(
    tmp_path: Path, dns: FakeDNS
) -> None:
    stores, box = _stores(tmp_path, [])
    with pytest.raises(StorageError, match=r"nowhere\.test does not resolve"):
        stores.for_config(_config(box, "s3", "http://nowhere.test:9000", "b"))


def test_sec_ssrf_unresolvable_name_is_refused_by_the_check(dns: FakeDNS) -> None:
    with pytest.raises(EndpointRefused, match=r"nowhere\.test does not resolve"):
        check_endpoint("http://nowhere.test", EndpointAllowlist())


# -- 13. addresses the check missed -------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("fec0::1", "site-local"),  # deprecated site-local, fec0::/10
        ("feff::1", "site-local"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around 169.254.169.254
        ("64:ff9b:1::a00:1", "local-use NAT64"),
        ("::a9fe:a9fe", "IPv4-compatible"),  # deprecated IPv4-compatible ::169.254.169.254
        ("3fff::1", "documentation"),
    ],
)
def test_sec_ssrf_more_non_public_addresses_are_refused(
    address: str, why: str, dns: FakeDNS
) -> None:
    with pytest.raises(EndpointRefused, match=why):
        check_endpoint(f"http://[{address}]:9000", EndpointAllowlist())
    dns.set("site.test", [address])
    with pytest.raises(EndpointRefused, match=f"site.test resolves to {address}.*{why}"):
        check_endpoint("http://site.test", EndpointAllowlist())


def test_sec_ssrf_nat64_of_a_public_address_passes(dns: FakeDNS) -> None:
    """An IPv6-only network reaches public IPv4 through NAT64: judged by the IPv4 inside
    (before, all of 64:ff9b::/96 was "reserved")."""
    check_endpoint("https://[64:ff9b::808:808]", EndpointAllowlist())
    dns.set("s3.test", ["64:ff9b::808:808"])
    check_endpoint("https://s3.test", EndpointAllowlist())


def test_sec_ssrf_the_guard_refuses_a_site_local_address_at_connect(dns: FakeDNS) -> None:
    dns.set("site.test", ["fec0::1"])
    spec = StorageSpec(
        "s3",
        "b",
        endpoint="http://site.test:9000",
        credentials=_creds("s3"),
        guard=_policy().guard(),
    )
    with pytest.raises(StorageError, match=r"connection to site.test \(fec0::1\) refused"):
        open_store(spec, timeout=5).list_page("", limit=1)


# -- the API's check when a config is created ----------------------------------------------


def _api(tmp_path: Path, allowed: list[str], **container_opts: Any) -> Iterator[Any]:

    from bootstrap import build_container
    from metadata.db import migrate
    from tests.support import InlineQueue

    settings = make_settings(tmp_path / "bayport", allowed_private_endpoints=allowed)
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue(), **container_opts)
    _, key = new_workspace(container)
    client = api_client(container, key)
    try:
        yield client
    finally:
        container.db.dispose()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Any]:
    """An API whose operator allows no private endpoint; names resolve by the fake DNS."""
    yield from _api(tmp_path, [])


def _oss_body(endpoint: str, bucket: str) -> dict[str, Any]:
    return {
        "name": "src",
        "provider": "oss",
        "endpoint": endpoint,
        "bucket_name": bucket,
        **_creds("oss"),
    }


def _refused_field(r: Any) -> tuple[str, str]:
    assert r.status_code == 422, r.text
    error = r.json()["detail"][0]
    return str(error["loc"][-1]), str(error["msg"])


def test_sec_ssrf_api_refuses_an_oss_bucket_host_inside(
    dns: FakeDNS, api: Any, probe: RecordingServer
) -> None:
    """The issue's attack: endpoint http://nip.io-like, bucket 169-254-169-254. The API
    checks the host oss2 contacts, not only the endpoint's: 422 naming `endpoint`, and the
    config check (verify on) never calls the probe."""
    dns.set("attacker.test", [PUBLIC])
    dns.set("latest.attacker.test", ["127.0.0.1"])
    body = _oss_body(f"http://attacker.test:{probe.port}", "latest")
    field, msg = _refused_field(api.post("/v1/storage-configs", json=body))
    assert probe.hits == []
    assert field == "endpoint"
    assert "latest.attacker.test resolves to 127.0.0.1, a loopback address" in msg
    assert api.get("/v1/storage-configs").json() == []


def test_sec_ssrf_api_refuses_an_endpoint_that_does_not_resolve(dns: FakeDNS, api: Any) -> None:
    for verify in ("false", "true"):
        r = api.post(
            "/v1/storage-configs",
            params={"verify": verify},
            json={**_oss_body("http://nowhere.test", "photos"), "provider": "s3"},
        )
        field, msg = _refused_field(r)
        assert field == "endpoint" and "nowhere.test does not resolve" in msg, msg


def test_sec_ssrf_api_check_then_rebinding_reaches_nothing(
    dns: FakeDNS, api: Any, probe: RecordingServer
) -> None:
    """Public at the API's check, the probe when the config check's listing connects: the
    connection is refused (422 naming `endpoint`), the probe gets nothing."""
    dns.set("rebind.test", [PUBLIC], ["127.0.0.1"])
    body = {**_oss_body(f"http://rebind.test:{probe.port}", "photos"), "provider": "s3"}
    field, msg = _refused_field(api.post("/v1/storage-configs", json=body))
    assert probe.hits == []
    assert field == "endpoint"
    assert "connection to rebind.test (127.0.0.1) refused" in msg, msg


def test_sec_ssrf_the_containers_resolver_answers_checks_and_connections(
    tmp_path: Path, probe: RecordingServer
) -> None:
    """build_container(resolve=...): the one resolver for the API's checks and every store
    connection (no socket patching): the bucket host is refused by it."""
    fake = FakeDNS(socket.getaddrinfo)
    fake.set("attacker.test", [PUBLIC])
    fake.set("latest.attacker.test", ["127.0.0.1"])
    for client in _api(tmp_path, [], resolve=fake):
        body = _oss_body(f"http://attacker.test:{probe.port}", "latest")
        field, msg = _refused_field(client.post("/v1/storage-configs", json=body))
        assert field == "endpoint" and "latest.attacker.test resolves to 127.0.0.1" in msg
        assert fake.lookups == {"attacker.test": 1, "latest.attacker.test": 1}
    assert probe.hits == []
