"""Stores with no server behind them make no presigned URL: UNSUPPORTED, and declared so."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.errors import ErrorKind
from storage_adapters.memory import MemoryStore
from storage_adapters.registry import open_store
from storage_adapters.throttled import Gate, ThrottledStore
from tests.contract import expect


class CountingGate:
    """A gate that lets everything through and counts what it was asked to admit."""

    def __init__(self) -> None:
        self.admitted = 0

    def admit(self, requests: int, nbytes: int) -> None:
        self.admitted += requests

    def throttled(self) -> None:
        pass

    def joined(self, other: Gate) -> Gate:
        return self


@pytest.fixture(params=["memory", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "memory":
        return MemoryStore()
    return open_store(StorageSpec("local", str(tmp_path)))


def test_no_presigned_url_from_a_store_without_a_server(store: ObjectStore) -> None:
    assert not store.capabilities.presigned_urls
    store.put("k", b"x")
    error = expect(ErrorKind.UNSUPPORTED, lambda: store.presign_get("k", expires_in=60))
    assert error.key == "k"
    assert not error.transient


def test_the_throttled_store_forwards_without_admitting_a_request(store: ObjectStore) -> None:
    gate = CountingGate()
    throttled = ThrottledStore(store, gate)
    expect(ErrorKind.UNSUPPORTED, lambda: throttled.presign_get("k", expires_in=60))
    assert gate.admitted == 0
