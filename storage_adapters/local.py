"""A folder as a bucket: Bayport's default storage in standalone mode, and a local import source.

The store itself; local_fs opens its folders and files without following symbolic links, and
local_errors maps every OSError.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from storage_adapters import local_fs as fs
from storage_adapters.base import (
    Blob,
    Capabilities,
    ListPage,
    ObjectInfo,
    ObjectStore,
    StorageSpec,
    UploadedPart,
)
from storage_adapters.common import check_part_md5, page_limit, still_version
from storage_adapters.errors import ErrorKind, StorageError, changed, not_found
from storage_adapters.local_errors import translate as _translate

# Names Bayport writes beside the data (temp files of atomic writes, multipart parts): hidden
# from listings at every depth and refused as key segments.
_RESERVED = ".bayport-"
_UPLOADS = f"{_RESERVED}uploads"
# Every LocalStore reaches every folder of this machine: one account.
LOCAL_ACCOUNT = "local"
_COPY_BUFFER = 1024 * 1024


class LocalStore:
    """The folder `root` as a bucket (it must exist unless `create`); keys live under its
    sub-folder `subpath`, which is created on first write.

    Symbolic links are never followed (local_fs.py): a listing skips them (files and
    folders), and a key whose path goes through one, or is one, is refused
    (PERMISSION_DENIED) by every call that reads, writes or deletes it.
    """

    def __init__(self, root: Path, *, subpath: str = "", create: bool = False) -> None:
        self.bucket_dir = Path(root).resolve()
        self._sub = _segments(subpath.strip("/")) if subpath.strip("/") else []
        self._dir = self.bucket_dir.joinpath(*self._sub)
        if create:
            self._dir.mkdir(parents=True, exist_ok=True)
        self.capabilities = Capabilities(
            lists_uploads=True,
            server_side_copy=True,
            server_side_copy_across_buckets=True,
            max_single_copy_size=None,
            multipart_copy=True,
            multipart_upload=True,
            min_part_size=0,
            max_list_page=1000,
        )

    @classmethod
    def from_spec(cls, spec: StorageSpec, **opts: object) -> LocalStore:
        """spec.bucket is the folder (an absolute path), spec.root a sub-folder of it."""
        if not spec.bucket or not Path(spec.bucket).is_absolute():
            raise StorageError(
                ErrorKind.INVALID_CONFIG,
                f"a local storage needs an absolute folder path as its bucket, got {spec.bucket!r}",
            )
        return cls(Path(spec.bucket), subpath=spec.root, **opts)  # type: ignore[arg-type]

    @property
    def account(self) -> str:
        return LOCAL_ACCOUNT

    @property
    def location(self) -> str:
        return f"file://{self._dir}/"

    def list_page(self, prefix: str, *, cursor: str | None = None, limit: int = 1000) -> ListPage:
        limit = page_limit(limit, self.capabilities.max_list_page)
        # Start at the deepest folder the prefix names instead of walking down from the root.
        folder_key = prefix.rpartition("/")[0]
        found: list[ObjectInfo] = []
        more = False
        try:
            with self._folder(_segments(folder_key) if folder_key else []) as start:
                rel = f"{folder_key}/" if folder_key else ""
                walk = fs.walk_files(start, rel, prefix, cursor, hidden=_RESERVED)
                with contextlib.closing(walk):
                    for key, st in walk:
                        if more := len(found) == limit:
                            break
                        found.append(_info(key, st))
        except (FileNotFoundError, NotADirectoryError):
            pass  # no such folder: nothing under the prefix
        except OSError as exc:
            raise _translate(exc, prefix) from exc
        return ListPage(objects=found, cursor=found[-1].key if more else None)

    def head(self, key: str) -> ObjectInfo:
        try:
            with self._parent(key) as (fd, name):
                st = fs.lstat(fd, name)
        except OSError as exc:
            raise _translate(exc, key) from exc
        if stat.S_ISLNK(st.st_mode):
            raise _translate(fs.symlink_error(name), key)
        if not stat.S_ISREG(st.st_mode) or key.endswith("/"):
            raise not_found(key)
        return _info(key, st)

    def open(
        self,
        key: str,
        *,
        chunk_size: int = 1024 * 1024,
        offset: int = 0,
        etag: str | None = None,
    ) -> Iterator[bytes]:
        try:
            with self._open_object(key) as f:
                if etag is not None:
                    now = _info(key, os.fstat(f.fileno())).etag
                    if now != etag:
                        raise changed(key, etag, now)
                f.seek(offset)
                while chunk := f.read(chunk_size):
                    yield chunk
        except OSError as exc:
            raise _translate(exc, key) from exc

    def get_bytes(self, key: str, *, max_size: int) -> bytes:
        return self.read(key, max_size=max_size).data

    def read(self, key: str, *, max_size: int) -> Blob:
        try:
            with self._open_object(key) as f:
                st = os.fstat(f.fileno())
                if st.st_size > max_size:  # refused by its size, before a byte is read
                    raise StorageError(
                        ErrorKind.PRECONDITION_FAILED,
                        f"object is {st.st_size} bytes, larger than the {max_size} allowed",
                        key=key,
                    )
                data = f.read(max_size + 1)  # (it may have grown since)
        except OSError as exc:
            raise _translate(exc, key) from exc
        if len(data) > max_size:
            raise StorageError(
                ErrorKind.PRECONDITION_FAILED,
                f"object is larger than the {max_size} bytes allowed",
                key=key,
            )
        return Blob(data=data, info=_info(key, st))

    def put(self, key: str, data: bytes | bytearray) -> ObjectInfo:
        segments = self._sub + _segments(key)
        if key.endswith("/"):  # a folder marker is a folder here
            try:
                with self._folder(segments, create=True, top=True):
                    pass
            except OSError as exc:
                raise _translate(exc, key, writing=True) from exc
            return ObjectInfo(key=key, size=0)
        st = self._replace_into(segments[:-1], segments[-1], key, lambda out: out.write(data))
        return _info(key, st)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        if if_match is not None and not still_version(lambda: self.head(key), key, if_match):
            return  # gone already
        try:
            with self._parent(key) as (fd, name):
                fs.refuse_symlink(fd, name)  # (a link is never a key: it is not listed)
                if key.endswith("/"):
                    os.rmdir(name, dir_fd=fd)
                else:
                    os.unlink(name, dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass  # nothing stored under that key
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise _translate(exc, key) from exc

    def can_copy_from(self, source: ObjectStore) -> bool:
        return isinstance(source, LocalStore)

    def copy_from(
        self,
        source: ObjectStore,
        src_key: str,
        dst_key: str,
        *,
        size: int | None = None,
        etag: str | None = None,
    ) -> ObjectInfo:
        src = self._copy_source(source, dst_key)
        segments = self._sub + _segments(dst_key)
        try:
            src_file = src._open_object(src_key)
        except OSError as exc:
            raise _translate(exc, src_key) from exc

        def copy(out: BinaryIO) -> None:
            shutil.copyfileobj(src_file, out, _COPY_BUFFER)
            # Checked after the bytes are in: a file changed before or while it was copied
            # has another ETag now, and the copy is dropped unseen.
            if etag is not None and not still_version(lambda: src.head(src_key), src_key, etag):
                raise not_found(src_key)

        with src_file:
            st = self._replace_into(segments[:-1], segments[-1], dst_key, copy)
        return _info(dst_key, st)

    def create_multipart(self, key: str) -> str:
        _segments(key)  # refuse a bad key now rather than at completion
        upload_id = uuid.uuid4().hex
        try:
            with self._folder([*self._sub, _UPLOADS], create=True, top=True) as uploads:
                os.mkdir(upload_id, dir_fd=uploads)
            folder = [*self._sub, _UPLOADS, upload_id]
            self._replace_into(folder, "key", key, lambda out: out.write(key.encode("utf-8")))
        except OSError as exc:
            raise _translate(exc, key, writing=True) from exc
        return upload_id

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, md5: bytes | None = None
    ) -> UploadedPart:
        etag = hashlib.md5(data).hexdigest()
        check_part_md5(key, number, etag, md5)
        self._store_part(key, upload_id, number, etag, lambda out: out.write(data))
        return UploadedPart(number=number, etag=etag)

    def copy_part(
        self,
        source: ObjectStore,
        src_key: str,
        key: str,
        upload_id: str,
        number: int,
        byte_range: tuple[int, int],
        *,
        etag: str | None = None,
    ) -> UploadedPart:
        src = self._copy_source(source, key)
        if etag is not None and not still_version(lambda: src.head(src_key), src_key, etag):
            raise not_found(src_key)
        first, last = byte_range
        try:
            with src._open_object(src_key) as f:
                size = os.fstat(f.fileno()).st_size
                if not 0 <= first <= last < size:
                    raise StorageError(
                        ErrorKind.PRECONDITION_FAILED,
                        f"byte range {first}-{last} is outside the source ({size} bytes)",
                        key=src_key,
                        status=416,
                    )
                f.seek(first)
                data = f.read(last - first + 1)
        except OSError as exc:
            raise _translate(exc, src_key) from exc
        return self.upload_part(key, upload_id, number, data)

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        content_md5: str | None = None,
    ) -> ObjectInfo:
        upload = self._upload_dir(key, upload_id)
        segments = self._sub + _segments(key)
        try:
            with self._folder(upload) as folder:
                names = _part_names(key, folder, parts)

                def assemble(out: BinaryIO) -> None:
                    for name in names:
                        with os.fdopen(fs.open_file(folder, name), "rb") as f:
                            shutil.copyfileobj(f, out, _COPY_BUFFER)

                st = self._replace_into(segments[:-1], segments[-1], key, assemble)
        except OSError as exc:
            raise _translate(exc, key) from exc
        self._drop_upload(upload_id)
        return _info(key, st)

    def list_uploads(self, prefix: str, *, limit: int = 1000) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        try:
            with self._folder([_UPLOADS]) as uploads:
                for upload_id in sorted(fs.list_names(uploads)):
                    try:
                        with fs.subfolder(uploads, upload_id) as f:
                            key = fs.read_text(f, "key")
                    except OSError:
                        continue  # made or dropped meanwhile
                    if key.startswith(prefix):
                        found.append((key, upload_id))
        except (OSError, StorageError):
            return []  # no uploads folder (yet), or no folder at all
        return found[:limit]

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self._upload_dir(key, upload_id)
        except StorageError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                return
            raise
        self._drop_upload(upload_id)

    def presign_get(self, key: str, *, expires_in: int) -> str:
        raise StorageError(
            ErrorKind.UNSUPPORTED,
            f"{self.location} is a local folder: it has no server to sign a URL for",
            key=key,
        )

    # -- private helpers ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _folder(
        self, segments: Sequence[str], *, create: bool = False, top: bool = False
    ) -> Iterator[int]:
        """The folder at `segments` below the bucket folder (`top`), or below the store's
        sub-folder; a missing bucket folder is NOT_FOUND, one that became a symlink
        PERMISSION_DENIED."""
        path = list(segments) if top else [*self._sub, *segments]
        try:
            fd = fs.open_folder(self.bucket_dir, path, create=create)
        except fs.BaseFolderError as exc:
            if exc.missing:
                raise StorageError(ErrorKind.NOT_FOUND, str(exc), status=404) from exc
            raise StorageError(ErrorKind.PERMISSION_DENIED, str(exc), status=403) from exc
        try:
            yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _parent(self, key: str) -> Iterator[tuple[int, str]]:
        """(the folder holding `key`, the key's last segment)."""
        segments = _segments(key)
        with self._folder(segments[:-1]) as fd:
            yield fd, segments[-1]

    def _open_object(self, key: str) -> BinaryIO:
        """The existing object `key`, open for reading (NOT_FOUND for a folder marker)."""
        if key.endswith("/"):
            raise not_found(key)
        with self._parent(key) as (fd, name):
            return os.fdopen(fs.open_file(fd, name), "rb")

    def _replace_into(
        self,
        folder: Sequence[str],
        name: str,
        key: str,
        fill: Callable[[BinaryIO], object],
    ) -> os.stat_result:
        """Write a temp file beside `name` in `folder` (below the bucket folder, created if
        missing) with `fill`, then rename it over `name`: readers see the old object or the
        new one, never a part. No fsync: a crash may lose the last writes, which an import
        redoes, but never shows a torn file under a real key. No symlink is followed: not a
        planted folder on the way, not one in place of the object."""
        tmp = f"{_RESERVED}tmp-{uuid.uuid4().hex}"
        try:
            with self._folder(folder, create=True, top=True) as fd:
                fs.refuse_symlink(fd, name)
                file_fd = fs.create_file(fd, tmp)
                try:
                    with os.fdopen(file_fd, "wb", closefd=False) as out:
                        fill(out)
                    os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
                    # Stat the file written, after its rename (which changes its ctime, part
                    # of the ETag), through its descriptor: not whatever a concurrent writer
                    # put at `name`.
                    return os.fstat(file_fd)
                finally:
                    os.close(file_fd)
                    with contextlib.suppress(OSError):  # renamed already
                        os.unlink(tmp, dir_fd=fd)
        except OSError as exc:
            raise _translate(exc, key, writing=True) from exc

    def _copy_source(self, source: ObjectStore, key: str) -> LocalStore:
        if not isinstance(source, LocalStore):
            raise StorageError(
                ErrorKind.UNSUPPORTED,
                f"no server-side copy from {source.location} to {self.location}",
                key=key,
            )
        return source

    def _upload_dir(self, key: str, upload_id: str) -> list[str]:
        """The segments of the multipart upload `upload_id` of `key` (NOT_FOUND if none)."""
        if not upload_id.isalnum():
            raise not_found(key, f"no multipart upload {upload_id}")
        segments = [_UPLOADS, upload_id]
        try:
            with self._folder(segments) as folder:
                owner: str | None = fs.read_text(folder, "key")
        except (FileNotFoundError, NotADirectoryError):
            owner = None
        except OSError as exc:
            raise _translate(exc, key) from exc
        if owner != key:
            raise not_found(key, f"no multipart upload {upload_id}")
        return segments

    def _drop_upload(self, upload_id: str) -> None:
        with contextlib.suppress(OSError, StorageError), self._folder([_UPLOADS]) as uploads:
            # With dir_fd, rmtree removes symlinks it meets, never what they point at.
            shutil.rmtree(upload_id, dir_fd=uploads)

    def _store_part(
        self, key: str, upload_id: str, number: int, etag: str, fill: Callable[[BinaryIO], object]
    ) -> None:
        if not 1 <= number <= 10_000:
            raise StorageError(
                ErrorKind.PRECONDITION_FAILED, f"part number {number} is not in 1..10000", key=key
            )
        upload = self._upload_dir(key, upload_id)
        # The ETag is in the file name, so completing checks it without reading the part.
        try:
            with self._folder(upload) as folder:
                for stale in fs.list_names(folder):
                    if stale.startswith(f"{number:05d}."):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(stale, dir_fd=folder)
        except OSError as exc:
            raise _translate(exc, key, writing=True) from exc
        self._replace_into([*self._sub, *upload], f"{number:05d}.{etag}", key, fill)


def _part_names(key: str, folder: int, parts: Sequence[UploadedPart]) -> list[str]:
    if not parts:
        raise StorageError(ErrorKind.PRECONDITION_FAILED, "no parts to complete", key=key)
    names: list[str] = []
    previous = 0
    for part in parts:
        if part.number <= previous:
            raise StorageError(ErrorKind.PRECONDITION_FAILED, "parts out of order", key=key)
        name = f"{part.number:05d}.{part.etag.strip(chr(34))}"
        try:  # (a name, never a path: an ETag holding '/' names no part)
            is_file = "/" not in name and stat.S_ISREG(fs.lstat(folder, name).st_mode)
        except (OSError, ValueError):
            is_file = False
        if not is_file:
            raise StorageError(
                ErrorKind.PRECONDITION_FAILED, f"part {part.number} was not uploaded", key=key
            )
        names.append(name)
        previous = part.number
    return names


def _segments(key: str) -> list[str]:
    """The folder names and file name of `key`, refusing keys that would leave the folder
    or that a file system cannot hold as the same key."""
    if not key:
        raise StorageError(ErrorKind.INVALID_CONFIG, "the empty key names no object")
    if key.startswith("/"):
        raise StorageError(ErrorKind.PERMISSION_DENIED, "absolute keys are refused", key=key)
    segments = key.split("/")
    if segments[-1] == "":  # a folder marker
        segments.pop()
    for segment in segments:
        if segment == "..":
            raise StorageError(
                ErrorKind.PERMISSION_DENIED, "keys may not leave the storage folder", key=key
            )
        if segment in ("", ".") or "\0" in segment or segment.startswith(_RESERVED):
            raise StorageError(
                ErrorKind.INVALID_CONFIG, "key cannot be stored in a local folder", key=key
            )
    return segments


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=st.st_size,
        # mtime and size alone miss a same-size edit whose mtime was kept (`rsync -a`,
        # `touch -r`): the inode (a file replaced) and ctime (changed in place) do not.
        etag=f"{st.st_mtime_ns:x}-{st.st_size:x}-{st.st_ino:x}-{st.st_ctime_ns:x}",
        last_modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC),
        md5=None,
    )
