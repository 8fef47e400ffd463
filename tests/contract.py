"""The ObjectStore contract: one suite every adapter passes (fsspec's tests/abstract pattern).

A test module subclasses `StoreContract` (and `CredentialsContract` where the server checks
signatures) and provides these fixtures:

- `make_store(root="")`: a store on an empty bucket (or folder) private to the test, with
  `root` as its key prefix; the same bucket on every call within one test.
- `peer_store`: an empty store of the same account on another bucket.
- `missing_bucket_store`: a store whose bucket does not exist; its bucket's name is in
  `missing_bucket_name`.
- `bad_credentials_store` (CredentialsContract): the bucket of `make_store` opened with a
  wrong secret.

Optional abilities are read from `store.capabilities`, never skipped on the server's name.
`folder_markers_stored = False` declares a server that turns a key 'a/' into an object 'a'.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable

import pytest

from storage_adapters.base import ObjectStore
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.memory import MemoryStore

KEYS = ["A", "a.b", "a/b", "a/c/d", "a0", "b", "z/y/x", "é"]
MakeStore = Callable[..., ObjectStore]


def list_all(store: ObjectStore, prefix: str = "", *, limit: int = 1000) -> list[str]:
    keys: list[str] = []
    cursor: str | None = None
    while True:
        page = store.list_page(prefix, cursor=cursor, limit=limit)
        assert len(page.objects) <= limit
        keys.extend(o.key for o in page.objects)
        if page.cursor is None:
            return keys
        assert page.cursor > (cursor or ""), "a cursor must move forward"
        cursor = page.cursor


def fill(store: ObjectStore, keys: list[str]) -> None:
    for key in keys:
        store.put(key, key.encode())


def part_size(store: ObjectStore) -> int:
    return max(store.capabilities.min_part_size, 64 * 1024)


def expect(kind: ErrorKind, call: Callable[[], object]) -> StorageError:
    with pytest.raises(StorageError) as caught:
        call()
    assert caught.value.kind is kind, caught.value
    return caught.value


class StoreContract:
    folder_markers_stored = True

    @pytest.fixture
    def store(self, make_store: MakeStore) -> ObjectStore:
        return make_store()

    # -- listing ---------------------------------------------------------------------------

    def test_empty_listing_is_one_empty_page(self, store: ObjectStore) -> None:
        page = store.list_page("")
        assert list(page.objects) == []
        assert page.cursor is None

    def test_listing_is_in_key_order_across_folders(self, store: ObjectStore) -> None:
        fill(store, KEYS)
        assert list_all(store) == sorted(KEYS)  # 'a.b' < 'a/b' < 'a0': '.' < '/' < '0'

    def test_pages_hold_at_most_limit_and_end_with_no_cursor(self, store: ObjectStore) -> None:
        fill(store, KEYS)
        for limit in (1, 2, 3, len(KEYS), len(KEYS) + 1):
            assert list_all(store, limit=limit) == sorted(KEYS)

    def test_a_listing_resumes_after_any_key(self, store: ObjectStore) -> None:
        fill(store, KEYS)
        for cursor in ("a/b", "a/c", "a/", "a", "0", "zz"):
            page = store.list_page("", cursor=cursor)
            assert [o.key for o in page.objects] == [k for k in sorted(KEYS) if k > cursor]

    def test_prefix_filters_and_combines_with_cursor(self, store: ObjectStore) -> None:
        fill(store, KEYS)
        assert list_all(store, "a/") == ["a/b", "a/c/d"]
        assert list_all(store, "a") == ["a.b", "a/b", "a/c/d", "a0"]
        assert list_all(store, "a/c/") == ["a/c/d"]
        assert list_all(store, "z/y") == ["z/y/x"]
        assert list_all(store, "nothing/") == []
        page = store.list_page("a", cursor="a/b")
        assert [o.key for o in page.objects] == ["a/c/d", "a0"]

    def test_listing_reports_size_and_etag(self, store: ObjectStore) -> None:
        info = store.put("dir/obj", b"12345")
        (listed,) = store.list_page("dir/").objects
        assert (listed.key, listed.size, listed.etag) == ("dir/obj", 5, info.etag)
        if listed.md5 is not None:
            assert listed.md5 == hashlib.md5(b"12345").hexdigest()

    def test_folder_markers_are_not_listed(self, store: ObjectStore) -> None:
        store.put("dir/file", b"x")
        # A server that stores a key 'a/' as an object 'a' (rclone) cannot hold markers at all.
        if self.folder_markers_stored:
            store.put("dir/", b"")
            store.put("empty/", b"")
        assert list_all(store) == ["dir/file"]

    def test_special_characters_in_keys(self, store: ObjectStore) -> None:
        keys = ["sp ace/ü+%20&=.txt", "tab\tand?query#frag"]
        fill(store, keys)
        assert list_all(store) == sorted(keys)
        for key in keys:
            assert store.get_bytes(key, max_size=100) == key.encode()

    def test_root_is_a_hidden_key_prefix(self, make_store: MakeStore) -> None:
        outer = make_store()
        inner = make_store("nested/deeper")
        inner.put("x", b"inner")
        outer.put("nested/deeper-not/y", b"outside the root")
        assert list_all(inner) == ["x"]
        assert inner.head("x").key == "x"
        assert outer.get_bytes("nested/deeper/x", max_size=10) == b"inner"
        assert list_all(outer) == ["nested/deeper-not/y", "nested/deeper/x"]

    # -- reading ---------------------------------------------------------------------------

    def test_head_of_a_missing_key_is_not_found(self, store: ObjectStore) -> None:
        error = expect(ErrorKind.NOT_FOUND, lambda: store.head("missing"))
        assert not error.transient

    def test_put_then_head_agree(self, store: ObjectStore) -> None:
        data = os.urandom(1000)
        put = store.put("k", data)
        head = store.head("k")
        assert (put.key, put.size) == (head.key, head.size) == ("k", 1000)
        assert put.etag and put.etag == head.etag
        if head.md5 is not None:
            assert head.md5 == hashlib.md5(data).hexdigest()

    def test_put_replaces(self, store: ObjectStore) -> None:
        store.put("k", b"old")
        store.put("k", b"new!")
        assert store.get_bytes("k", max_size=10) == b"new!"
        assert store.head("k").size == 4

    def test_get_bytes_refuses_objects_over_max_size(self, store: ObjectStore) -> None:
        store.put("k", b"0123456789")
        assert store.get_bytes("k", max_size=10) == b"0123456789"
        expect(ErrorKind.PRECONDITION_FAILED, lambda: store.get_bytes("k", max_size=9))
        expect(ErrorKind.NOT_FOUND, lambda: store.get_bytes("missing", max_size=9))

    def test_read_gives_the_etag_a_listing_and_head_give(self, store: ObjectStore) -> None:
        # A sync tells a changed label file by its ETag: the one read with the label must
        # be the one the next listing shows.
        store.put("labels/a.json", b'{"x": 1}')
        blob = store.read("labels/a.json", max_size=100)
        assert blob.data == b'{"x": 1}'
        assert blob.info.size == 8
        listed = store.list_page("labels/").objects
        assert [o.key for o in listed] == ["labels/a.json"]
        assert blob.info.etag is not None
        assert blob.info.etag == listed[0].etag == store.head("labels/a.json").etag
        store.put("labels/a.json", b'{"x": 22}')
        assert store.read("labels/a.json", max_size=100).info.etag != blob.info.etag
        expect(ErrorKind.PRECONDITION_FAILED, lambda: store.read("labels/a.json", max_size=3))

    def test_open_yields_bounded_chunks(self, store: ObjectStore) -> None:
        data = os.urandom(10_000)
        store.put("k", data)
        chunks = list(store.open("k", chunk_size=4096))
        assert b"".join(chunks) == data
        assert all(0 < len(c) <= 4096 for c in chunks)
        assert b"".join(store.open("k")) == data

    def test_open_from_an_offset(self, store: ObjectStore) -> None:
        data = os.urandom(10_000)
        store.put("k", data)
        for offset in (1, 4095, 4096, 9999):
            chunks = list(store.open("k", chunk_size=4096, offset=offset))
            assert b"".join(chunks) == data[offset:], offset
            assert all(0 < len(c) <= 4096 for c in chunks)
        # At or past the end: no chunks, no error (a read that broke after its last byte).
        assert list(store.open("k", offset=len(data))) == []
        assert list(store.open("k", offset=len(data) + 5)) == []
        store.put("empty", b"")
        assert list(store.open("empty", offset=0)) == []
        assert list(store.open("empty", offset=1)) == []
        expect(ErrorKind.NOT_FOUND, lambda: next(iter(store.open("missing", offset=3))))

    def test_a_broken_read_resumes_where_it_broke(self, store: ObjectStore) -> None:
        data = os.urandom(10_000)
        store.put("k", data)
        (listed,) = store.list_page("k").objects
        assert listed.etag is not None
        first = next(iter(store.open("k", chunk_size=3000, etag=listed.etag)))
        assert first == data[: len(first)]
        rest = store.open("k", chunk_size=3000, offset=len(first), etag=listed.etag)
        assert first + b"".join(rest) == data
        assert list(store.open("k", offset=len(data), etag=listed.etag)) == []

    def test_a_pinned_read_of_a_changed_object_is_refused(self, store: ObjectStore) -> None:
        store.put("k", b"the first version")
        (listed,) = store.list_page("k").objects
        assert listed.etag is not None
        store.put("k", b"the second version, longer")
        for offset in (0, 4):
            chunks = store.open("k", offset=offset, etag=listed.etag)
            error = expect(ErrorKind.PRECONDITION_FAILED, lambda c=chunks: next(iter(c)))
            assert not error.transient
            assert error.key == "k" and "changed" in str(error)
        now = store.head("k").etag
        assert b"".join(store.open("k", offset=4, etag=now)) == b"second version, longer"

    def test_open_of_a_missing_key_fails_when_read(self, store: ObjectStore) -> None:
        chunks = store.open("missing")  # no request yet
        expect(ErrorKind.NOT_FOUND, lambda: next(iter(chunks)))

    def test_empty_object(self, store: ObjectStore) -> None:
        store.put("empty", b"")
        assert store.head("empty").size == 0
        assert store.get_bytes("empty", max_size=0) == b""
        assert b"".join(store.open("empty")) == b""

    # -- deleting --------------------------------------------------------------------------

    def test_delete(self, store: ObjectStore) -> None:
        store.put("d/k", b"x")
        store.delete("d/k")
        expect(ErrorKind.NOT_FOUND, lambda: store.head("d/k"))
        assert list_all(store) == []

    def test_deleting_a_missing_key_is_fine(self, store: ObjectStore) -> None:
        store.delete("never/was")
        store.delete("never/was", if_match="0123456789abcdef0123456789abcdef")

    def test_a_conditional_delete_keeps_a_version_it_was_not_told(self, store: ObjectStore) -> None:
        """Issue 19 item 1: a move deletes the source version it copied, never a newer one."""
        listed = store.put("cd/k", b"the version copied")
        newer = store.put("cd/k", b"written after the listing")
        assert newer.etag != listed.etag
        err = expect(
            ErrorKind.PRECONDITION_FAILED, lambda: store.delete("cd/k", if_match=listed.etag)
        )
        assert not err.transient
        assert store.get_bytes("cd/k", max_size=100) == b"written after the listing"
        assert newer.etag is not None
        store.delete("cd/k", if_match=newer.etag)
        expect(ErrorKind.NOT_FOUND, lambda: store.head("cd/k"))

    # -- server-side copy ------------------------------------------------------------------

    def test_copy_within_the_store(self, store: ObjectStore) -> None:
        assert store.capabilities.server_side_copy
        assert store.can_copy_from(store)
        data = os.urandom(3000)
        store.put("src", data)
        info = store.copy_from(store, "src", "copies/dst")
        assert (info.key, info.size) == ("copies/dst", 3000)
        assert store.get_bytes("copies/dst", max_size=3000) == data

    def test_copy_told_the_size_reports_a_verifiable_copy(self, store: ObjectStore) -> None:
        data = os.urandom(2048)
        store.put("src", data)
        info = store.copy_from(store, "src", "told", size=len(data))
        assert info.size == len(data)
        if info.md5 is not None:  # when the answer carries a content hash, it is the real one
            assert info.md5 == hashlib.md5(data).hexdigest()
        assert store.head("told").size == len(data)

    def test_copy_across_buckets_of_one_account(
        self, store: ObjectStore, peer_store: ObjectStore
    ) -> None:
        assert store.account == peer_store.account
        if not store.capabilities.server_side_copy_across_buckets:
            expect(ErrorKind.UNSUPPORTED, lambda: store.copy_from(peer_store, "src", "dst"))
            return
        assert store.can_copy_from(peer_store)
        peer_store.put("src", b"from the peer")
        store.copy_from(peer_store, "src", "dst")
        assert store.get_bytes("dst", max_size=100) == b"from the peer"

    def test_a_pinned_copy_of_a_changed_source_is_refused(self, store: ObjectStore) -> None:
        """Issue 19 item 7: a copy takes the version listed, or nothing."""
        listed = store.put("pin/src", b"listed")
        store.put("pin/src", b"changed since")
        err = expect(
            ErrorKind.PRECONDITION_FAILED,
            lambda: store.copy_from(store, "pin/src", "pin/dst", size=6, etag=listed.etag),
        )
        assert not err.transient
        if "pin/dst" in list_all(store, "pin/"):
            # A server that ignores the copy condition (rclone's and moto's S3) is caught by
            # the adapter after the copy: what landed is one whole version, never a splice.
            assert store.get_bytes("pin/dst", max_size=100) == b"changed since"
        now = store.head("pin/src")
        store.copy_from(store, "pin/src", "pin/dst", size=now.size, etag=now.etag)
        assert store.get_bytes("pin/dst", max_size=100) == b"changed since"

    def test_copy_of_a_missing_source_is_not_found(self, store: ObjectStore) -> None:
        expect(ErrorKind.NOT_FOUND, lambda: store.copy_from(store, "missing", "dst"))

    def test_no_server_side_copy_from_another_account(self, store: ObjectStore) -> None:
        foreign = MemoryStore()
        foreign.put("src", b"x")
        assert not store.can_copy_from(foreign)
        expect(ErrorKind.UNSUPPORTED, lambda: store.copy_from(foreign, "src", "dst"))

    # -- multipart -------------------------------------------------------------------------

    def test_multipart_upload(self, store: ObjectStore) -> None:
        assert store.capabilities.multipart_upload
        size = part_size(store)
        chunks = [os.urandom(size), os.urandom(size), os.urandom(size // 3)]
        upload_id = store.create_multipart("big/object")
        parts = [
            store.upload_part("big/object", upload_id, n, data)
            for n, data in enumerate(chunks, start=1)
        ]
        assert [p.number for p in parts] == [1, 2, 3]
        info = store.complete_multipart("big/object", upload_id, parts)
        assert info.size == sum(map(len, chunks))
        assert info.md5 is None or info.md5 == hashlib.md5(b"".join(chunks)).hexdigest()
        assert b"".join(store.open("big/object")) == b"".join(chunks)
        assert store.head("big/object").size == info.size
        assert list_all(store) == ["big/object"]

    def test_parts_may_come_out_of_order_and_be_sent_again(self, store: ObjectStore) -> None:
        """What retries and parallel part uploads do. (Sending a part again with *different*
        bytes is not part of the contract: rclone serve s3 refuses it.)"""
        size = part_size(store)
        chunks = [os.urandom(size), b"tail"]
        upload_id = store.create_multipart("k")
        last = store.upload_part("k", upload_id, 2, chunks[1])
        store.upload_part("k", upload_id, 1, chunks[0])
        first = store.upload_part("k", upload_id, 1, chunks[0])
        store.complete_multipart("k", upload_id, [first, last])
        assert store.get_bytes("k", max_size=size + 4) == b"".join(chunks)

    # Whether the server checks a part's Content-MD5 (moto does not).
    checks_part_md5 = True

    def test_a_part_with_its_md5_given_is_stored_and_a_wrong_one_refused(
        self, store: ObjectStore
    ) -> None:
        """The copier hashes each part once and hands the digest over (`md5`): the store
        sends it as the Content-MD5 the service checks, and a part whose bytes it does not
        describe is refused, not stored under it."""
        size = part_size(store)
        chunks = [os.urandom(size), b"the tail"]
        if self.checks_part_md5:
            refused = store.create_multipart("md5/refused")
            wrong = hashlib.md5(b"other bytes").digest()
            expect(
                ErrorKind.CHECKSUM_MISMATCH,
                lambda: store.upload_part("md5/refused", refused, 1, chunks[0], md5=wrong),
            )
            with contextlib.suppress(StorageError):  # rclone serve s3 drops the upload itself
                store.abort_multipart("md5/refused", refused)
        upload_id = store.create_multipart("md5/k")
        parts = [
            store.upload_part("md5/k", upload_id, n, data, md5=hashlib.md5(data).digest())
            for n, data in enumerate(chunks, start=1)
        ]
        store.complete_multipart("md5/k", upload_id, parts)
        assert b"".join(store.open("md5/k")) == b"".join(chunks)

    def test_complete_refuses_a_part_never_uploaded(self, store: ObjectStore) -> None:
        upload_id = store.create_multipart("k")
        part = store.upload_part("k", upload_id, 1, b"data")
        bogus = type(part)(number=1, etag="0" * 32)
        expect(
            ErrorKind.PRECONDITION_FAILED, lambda: store.complete_multipart("k", upload_id, [bogus])
        )
        store.abort_multipart("k", upload_id)

    def test_unfinished_uploads_are_listed_until_aborted(self, store: ObjectStore) -> None:
        """Issue 19 item 14: what a killed copy leaves behind can be found and dropped."""
        if not store.capabilities.lists_uploads:
            assert store.list_uploads("") == []
            return
        first = store.create_multipart("up/a.bin")
        store.upload_part("up/a.bin", first, 1, b"part one")
        second = store.create_multipart("up/b.bin")
        store.create_multipart("other/c.bin")
        listed = store.list_uploads("up/")
        assert sorted(listed) == sorted([("up/a.bin", first), ("up/b.bin", second)])
        for key, upload_id in listed:
            store.abort_multipart(key, upload_id)
        assert store.list_uploads("up/") == []
        for key, upload_id in store.list_uploads(""):
            store.abort_multipart(key, upload_id)

    def test_abort_drops_the_upload_and_may_be_repeated(self, store: ObjectStore) -> None:
        upload_id = store.create_multipart("k")
        part = store.upload_part("k", upload_id, 1, b"data")
        store.abort_multipart("k", upload_id)
        store.abort_multipart("k", upload_id)
        # NOT_FOUND on S3 and rclone; moto answers 500 InternalError.
        with pytest.raises(StorageError):
            store.complete_multipart("k", upload_id, [part])
        expect(ErrorKind.NOT_FOUND, lambda: store.head("k"))
        assert list_all(store) == []

    def test_multipart_copy(self, store: ObjectStore, peer_store: ObjectStore) -> None:
        size = part_size(store)
        data = os.urandom(size + size // 2)
        peer_store.put("src", data)
        store.put("local-src", data)
        upload_id = store.create_multipart("dst")
        if not store.capabilities.multipart_copy:
            expect(
                ErrorKind.UNSUPPORTED,
                lambda: store.copy_part(store, "local-src", "dst", upload_id, 1, (0, size - 1)),
            )
            store.abort_multipart("dst", upload_id)
            return
        parts = [
            store.copy_part(store, "local-src", "dst", upload_id, 1, (0, size - 1)),
            store.copy_part(peer_store, "src", "dst", upload_id, 2, (size, len(data) - 1)),
        ]
        info = store.complete_multipart("dst", upload_id, parts)
        assert info.size == len(data)
        assert store.get_bytes("dst", max_size=len(data)) == data

    # -- errors ----------------------------------------------------------------------------

    def test_a_missing_bucket_is_not_found(
        self, missing_bucket_store: ObjectStore, missing_bucket_name: str
    ) -> None:
        error = expect(ErrorKind.NOT_FOUND, lambda: missing_bucket_store.list_page(""))
        assert missing_bucket_name in str(error)
        assert not error.transient
        expect(ErrorKind.NOT_FOUND, lambda: missing_bucket_store.head("k"))
        expect(ErrorKind.NOT_FOUND, lambda: missing_bucket_store.put("k", b"x"))

    def test_account_and_location_are_named(self, store: ObjectStore) -> None:
        assert store.account and isinstance(store.account, str)
        assert store.location and isinstance(store.location, str)


class CredentialsContract:
    """For servers that check request signatures."""

    def test_wrong_credentials_are_permission_denied(
        self, bad_credentials_store: ObjectStore
    ) -> None:
        for call in (
            lambda: bad_credentials_store.list_page(""),
            lambda: bad_credentials_store.head("k"),
            lambda: bad_credentials_store.put("k", b"x"),
            lambda: bad_credentials_store.get_bytes("k", max_size=10),
        ):
            error = expect(ErrorKind.PERMISSION_DENIED, call)
            assert not error.transient
