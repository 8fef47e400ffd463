"""The memory adapter: the contract every store passes, plus the knobs unit tests rely on."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest

from storage_adapters.base import StorageSpec
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.memory import MemoryBackend, MemoryStore, _SortedKeys
from storage_adapters.registry import open_store
from storage_adapters.retry import RetryPolicy
from tests.contract import MakeStore, StoreContract, expect, list_all


class TestMemoryStoreContract(StoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        backend = MemoryBackend("contract")
        return lambda root="": MemoryStore(backend, root=root)

    @pytest.fixture
    def peer_store(self, make_store: MakeStore) -> MemoryStore:
        return MemoryStore(MemoryBackend("peer"), account=make_store().account)

    @pytest.fixture
    def missing_bucket_name(self) -> str:
        return "gone-bucket"

    @pytest.fixture
    def missing_bucket_store(self, missing_bucket_name: str) -> MemoryStore:
        backend = MemoryBackend(missing_bucket_name)
        backend.exists = False
        return MemoryStore(backend)


@pytest.fixture
def named_backends() -> Iterator[None]:
    MemoryBackend.forget_named()
    yield
    MemoryBackend.forget_named()


def test_sorted_keys_match_a_sorted_list_through_splits_and_removals() -> None:
    rng = random.Random(7)
    keys = _SortedKeys()
    present: set[str] = set()
    for _ in range(6000):
        key = f"{rng.randrange(4000):05d}/{rng.choice('abc')}"
        if key in present and rng.random() < 0.4:
            keys.remove(key)
            present.discard(key)
        elif key not in present:
            keys.add(key)
            present.add(key)
    ordered = sorted(present)
    assert list(keys.iter_from("", inclusive=True)) == ordered
    for start in [*rng.sample(ordered, 50), "", "0", "02000", "zzz"]:
        assert list(keys.iter_from(start, inclusive=True)) == [k for k in ordered if k >= start]
        assert list(keys.iter_from(start, inclusive=False)) == [k for k in ordered if k > start]


def test_paging_deep_into_many_keys() -> None:
    store = MemoryStore()
    for i in range(20_000):
        store.put(f"k/{i:06d}", b"")
    page = store.list_page("k/", cursor="k/012344", limit=3)
    assert [o.key for o in page.objects] == ["k/012345", "k/012346", "k/012347"]
    assert page.cursor == "k/012347"
    assert store.list_page("k/", cursor="k/019999").cursor is None


def test_concurrent_writers_lose_nothing() -> None:
    store = MemoryStore()

    def write(worker: int) -> None:
        for i in range(500):
            store.put(f"w{worker}/{i:04d}", b"x")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(list_all(store)) == 8 * 500


def test_stores_share_an_account_only_when_told() -> None:
    one, two = MemoryBackend(), MemoryBackend()
    assert not MemoryStore(one).can_copy_from(MemoryStore(two))
    assert MemoryStore(one).can_copy_from(MemoryStore(one, root="elsewhere"))
    src = MemoryStore(two, account="team")
    dst = MemoryStore(one, account="team")
    src.put("k", b"shared")
    assert dst.can_copy_from(src)
    dst.copy_from(src, "k", "copied")
    assert dst.get_bytes("copied", max_size=10) == b"shared"


def test_small_limits_drive_the_multipart_paths() -> None:
    store = MemoryStore(min_part_size=4, max_single_copy_size=10)
    store.put("big", b"0123456789A")
    expect(ErrorKind.UNSUPPORTED, lambda: store.copy_from(store, "big", "copy"))
    upload_id = store.create_multipart("copy")
    parts = [
        store.copy_part(store, "big", "copy", upload_id, 1, (0, 3)),
        store.copy_part(store, "big", "copy", upload_id, 2, (4, 10)),
    ]
    info = store.complete_multipart("copy", upload_id, parts)
    assert store.get_bytes("copy", max_size=11) == b"0123456789A"
    assert info.etag is not None and info.etag.endswith("-2") and info.md5 is None

    upload_id = store.create_multipart("small")
    parts = [store.upload_part("small", upload_id, n, b"abc") for n in (1, 2)]
    expect(
        ErrorKind.PRECONDITION_FAILED, lambda: store.complete_multipart("small", upload_id, parts)
    )
    expect(
        ErrorKind.PRECONDITION_FAILED,
        lambda: store.copy_part(store, "big", "small", upload_id, 3, (5, 11)),
    )


def test_injected_failures_are_raised_in_turn_and_retried() -> None:
    backend = MemoryBackend()
    store = MemoryStore(backend)
    slow_down = StorageError(ErrorKind.RATE_LIMITED, "slow down")
    backend.fail_next("put", slow_down, times=2)
    with pytest.raises(StorageError) as caught:
        store.put("k", b"1")
    assert caught.value is slow_down
    retries: list[int] = []
    policy = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.01)
    policy.call(lambda: store.put("k", b"2"), on_retry=lambda e, n: retries.append(n))
    assert retries == [1]
    assert store.get_bytes("k", max_size=1) == b"2"


def test_a_vanished_bucket_is_not_found_everywhere() -> None:
    backend = MemoryBackend("b")
    store = MemoryStore(backend)
    store.put("k", b"x")
    backend.exists = False
    for call in (
        lambda: store.list_page(""),
        lambda: store.head("k"),
        lambda: store.put("k", b"y"),
        lambda: store.delete("k"),
        lambda: store.create_multipart("k"),
    ):
        expect(ErrorKind.NOT_FOUND, call)


@pytest.mark.usefixtures("named_backends")
def test_the_registry_opens_named_backends() -> None:
    first = open_store(StorageSpec(provider="memory", bucket="photos", root="2024"))
    again = open_store(StorageSpec(provider="memory", bucket="photos"))
    other = open_store(StorageSpec(provider="memory", bucket="videos"))
    first.put("cat.jpg", b"meow")
    assert list_all(again) == ["2024/cat.jpg"]
    assert list_all(other) == []
    assert other.can_copy_from(first)  # one process, one account
    other.copy_from(first, "cat.jpg", "copied.jpg")
    assert other.get_bytes("copied.jpg", max_size=4) == b"meow"


def test_the_registry_refuses_unknown_providers() -> None:
    error = expect(ErrorKind.INVALID_CONFIG, lambda: open_store(StorageSpec(provider="ftp")))
    assert "known: azure, local, memory, oss, s3" in str(error)
    relative = StorageSpec(provider="local", bucket="relative/path")
    expect(ErrorKind.INVALID_CONFIG, lambda: open_store(relative))
