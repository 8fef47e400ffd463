"""Presigned GET URLs (`ObjectStore.presign_get`) fetched with a plain HTTP GET from real servers:
rclone serve s3 (checks SigV4 query signatures and their expiry), the OSS test server (v1
signed URLs) and Azurite (service SAS)."""

from __future__ import annotations

import dataclasses
import re
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from devstack import services as local_services
from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.errors import ErrorKind
from storage_adapters.registry import open_store
from tests.contract import expect
from tests.proxied import Server, new_bucket

ROOT = "presign root"  # keys are relative to the store's root, as for every other method
KEY = "a dir/b c+d é.bin"
OTHER = "a dir/other.bin"
DATA = bytes(range(256)) * 8
# An address nothing listens on: a store there can still sign, since signing sends nothing.
NOWHERE = "http://127.0.0.1:9"

FLAVORS = [pytest.param("s3", marks=pytest.mark.s3), "oss", "azure"]


def fetch(url: str) -> tuple[int, bytes]:
    """GET `url` as its holder would: no credentials, no headers of ours."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - a test server
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(params=FLAVORS)
def server(request: pytest.FixtureRequest) -> Server:
    return new_bucket(request, request.param, "presign")


@pytest.fixture
def store(server: Server) -> ObjectStore:
    spec = dataclasses.replace(server.spec(server.endpoint), root=ROOT)
    return open_store(spec, timeout=10, **server.opts)


def test_a_presigned_url_gets_the_object_without_credentials(
    server: Server, store: ObjectStore
) -> None:
    assert store.capabilities.presigned_urls
    store.put(KEY, DATA)
    url = store.presign_get(KEY, expires_in=300)
    assert url.startswith(server.endpoint)
    spec = server.spec(server.endpoint)
    secret = spec.credentials.get("accesskey_secret") or spec.credentials["account_key"]
    assert secret not in url
    assert fetch(url) == (200, DATA)
    # Only the root's object: the same key at the bucket's top is another object.
    bare = open_store(server.spec(server.endpoint), timeout=10, **server.opts)
    bare.put(KEY, b"not under the root")
    assert fetch(url) == (200, DATA)
    assert fetch(bare.presign_get(KEY, expires_in=300)) == (200, b"not under the root")


def test_a_url_for_one_key_does_not_get_another(store: ObjectStore) -> None:
    store.put(KEY, DATA)
    store.put(OTHER, b"someone else's")
    url = urlsplit(store.presign_get(KEY, expires_in=300))
    other = urlsplit(store.presign_get(OTHER, expires_in=300))
    assert fetch(other.geturl()) == (200, b"someone else's")
    # KEY's signature on OTHER's path: the path is signed, so it is refused.
    status, body = fetch(url._replace(path=other.path).geturl())
    assert status == 403, body
    # Nor a signature changed.
    query = re.sub(r"(^|&)(Signature|X-Amz-Signature|sig)=", r"\g<0>0", url.query)
    assert query != url.query
    status, body = fetch(url._replace(query=query).geturl())
    assert status == 403, body


def test_an_expired_url_is_refused(store: ObjectStore) -> None:
    store.put(KEY, DATA)
    url = store.presign_get(KEY, expires_in=1)
    time.sleep(2)
    status, body = fetch(url)
    # 403 on OSS and Azure (and AWS); rclone serve s3 answers 400 AccessDenied.
    assert status in (400, 403), (status, body)
    assert DATA not in body
    assert fetch(store.presign_get(KEY, expires_in=60)) == (200, DATA)


def test_a_missing_object_is_the_providers_404(store: ObjectStore) -> None:
    """Signing asks nothing of the server, so a URL is made for any key; the GET says."""
    status, _ = fetch(store.presign_get("missing", expires_in=60))
    assert status == 404


# -- made without a server ---------------------------------------------------------------------


def nowhere_spec(provider: str, *, anonymous: bool = False) -> StorageSpec:
    if provider == "azure":
        name, key = local_services.AZURITE_ACCOUNT_NAME, local_services.AZURITE_ACCOUNT_KEY
        credentials = (
            {"account_name": name} if anonymous else {"account_name": name, "account_key": key}
        )
        return StorageSpec("azure", "c", endpoint=f"{NOWHERE}/{name}", credentials=credentials)
    credentials = {} if anonymous else {"accesskey_id": "ak", "accesskey_secret": "sk"}
    return StorageSpec(provider, "bucket", root="r", endpoint=NOWHERE, credentials=credentials)


@pytest.mark.parametrize("provider", ["s3", "oss", "azure"])
def test_signing_sends_no_request(provider: str) -> None:
    store = open_store(nowhere_spec(provider), timeout=1)
    url = store.presign_get("k", expires_in=60)
    assert url.startswith(NOWHERE)
    assert "?" in url  # signed: the signature rides in the query


@pytest.mark.parametrize("provider", ["s3", "oss", "azure"])
def test_an_anonymous_store_answers_the_plain_url(provider: str) -> None:
    store = open_store(nowhere_spec(provider, anonymous=True), timeout=1)
    url = store.presign_get("a/k", expires_in=60)
    assert url.startswith(NOWHERE)
    assert "?" not in url
    assert urlsplit(url).path.endswith("/k")


@pytest.mark.parametrize("provider", ["s3", "oss", "azure"])
def test_a_lifetime_below_a_second_is_invalid(provider: str) -> None:
    store = open_store(nowhere_spec(provider), timeout=1)
    for seconds in (0, -5):
        expect(ErrorKind.INVALID_CONFIG, lambda s=seconds: store.presign_get("k", expires_in=s))


def test_s3_refuses_a_lifetime_over_seven_days() -> None:
    store = open_store(nowhere_spec("s3"), timeout=1)
    assert "X-Amz-Expires=604800" in store.presign_get("k", expires_in=7 * 24 * 3600)
    expect(ErrorKind.INVALID_CONFIG, lambda: store.presign_get("k", expires_in=7 * 24 * 3600 + 1))
