"""A folder as a bucket: Bayport's default storage in standalone mode, and a local import source."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from storage_adapters.base import (
    Blob,
    Capabilities,
    ListPage,
    ObjectInfo,
    ObjectStore,
    StorageSpec,
    UploadedPart,
)
from storage_adapters.common import page_limit, still_version
from storage_adapters.errors import ErrorKind, StorageError, changed, not_found

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

    Listing walks the tree lazily in key order; symlinked folders are not followed (no loops,
    no escaping the root), symlinked files are listed as files.
    """

    def __init__(self, root: Path, *, subpath: str = "", create: bool = False) -> None:
        self.bucket_dir = Path(root).resolve()
        subpath = subpath.strip("/")
        self._dir = _join(self.bucket_dir, subpath) if subpath else self.bucket_dir
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
        self._check_bucket()
        # Start at the deepest folder the prefix names instead of walking down from the root.
        folder_key = prefix.rpartition("/")[0]
        start = self._path(folder_key) if folder_key else self._dir
        walk = self._walk(start, f"{folder_key}/" if folder_key else "", prefix, cursor)
        found: list[ObjectInfo] = []
        more = False
        try:
            for key, entry in walk:
                try:
                    st = entry.stat()
                except FileNotFoundError:  # deleted since the folder was read
                    continue
                if len(found) == limit:
                    more = True
                    break
                found.append(_info(key, st))
        except OSError as exc:
            raise _translate(exc, prefix) from exc
        finally:
            walk.close()
        return ListPage(objects=found, cursor=found[-1].key if more else None)

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except OSError as exc:
            raise _translate(exc, key) from exc
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
        path = self._path(key)
        try:
            with path.open("rb") as f:
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
        path = self._path(key)
        try:
            with path.open("rb") as f:
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
        path = self._path(key)
        if key.endswith("/"):  # a folder marker is a folder here
            self._check_bucket()
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _translate(exc, key, writing=True) from exc
            return ObjectInfo(key=key, size=0)
        return _info(key, self._replace_into(path, key, lambda tmp: tmp.write_bytes(data)))

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        path = self._path(key)
        if if_match is not None and not still_version(lambda: self.head(key), key, if_match):
            return  # gone already
        try:
            if key.endswith("/"):
                path.rmdir()
            else:
                path.unlink()
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
        src_path = src._file(src_key)
        path = self._path(dst_key)

        def copy(tmp: Path) -> None:
            shutil.copyfile(src_path, tmp)
            # Checked after the bytes are in: a file changed before or while it was copied
            # has another ETag now, and the copy is dropped unseen.
            if etag is not None and not still_version(lambda: src.head(src_key), src_key, etag):
                raise not_found(src_key)

        st = self._replace_into(path, dst_key, copy)
        return _info(dst_key, st)

    def create_multipart(self, key: str) -> str:
        self._path(key)  # refuse a bad key now rather than at completion
        self._check_bucket()
        upload_id = uuid.uuid4().hex
        folder = self._dir / _UPLOADS / upload_id
        try:
            folder.mkdir(parents=True)
            (folder / "key").write_text(key, encoding="utf-8")
        except OSError as exc:
            raise _translate(exc, key, writing=True) from exc
        return upload_id

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        etag = hashlib.md5(data).hexdigest()
        self._store_part(key, upload_id, number, etag, lambda tmp: tmp.write_bytes(data))
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
        src_path = src._file(src_key)
        if etag is not None and not still_version(lambda: src.head(src_key), src_key, etag):
            raise not_found(src_key)
        first, last = byte_range
        try:
            with src_path.open("rb") as f:
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
        folder = self._upload_dir(key, upload_id)
        files = _part_files(key, folder, parts)

        def assemble(tmp: Path) -> None:
            with tmp.open("wb") as out:
                for part in files:
                    with part.open("rb") as f:
                        shutil.copyfileobj(f, out, _COPY_BUFFER)

        st = self._replace_into(self._path(key), key, assemble)
        shutil.rmtree(folder, ignore_errors=True)
        return _info(key, st)

    def list_uploads(self, prefix: str, *, limit: int = 1000) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for folder in sorted((self._dir / _UPLOADS).glob("*")):
            try:
                key = (folder / "key").read_text(encoding="utf-8")
            except OSError:
                continue  # made or dropped meanwhile
            if key.startswith(prefix):
                found.append((key, folder.name))
        return found[:limit]

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            folder = self._upload_dir(key, upload_id)
        except StorageError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                return
            raise
        shutil.rmtree(folder, ignore_errors=True)

    def presign_get(self, key: str, *, expires_in: int) -> str:
        raise StorageError(
            ErrorKind.UNSUPPORTED,
            f"{self.location} is a local folder: it has no server to sign a URL for",
            key=key,
        )

    # -- private helpers ---------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return _join(self._dir, key)

    def _file(self, key: str) -> Path:
        """The path of an existing object (NOT_FOUND otherwise)."""
        path = self._path(key)
        if key.endswith("/") or not path.is_file():
            raise not_found(key)
        return path

    def _check_bucket(self) -> None:
        if not self.bucket_dir.is_dir():
            raise StorageError(
                ErrorKind.NOT_FOUND, f"folder {self.bucket_dir} does not exist", status=404
            )

    def _walk(
        self, folder: Path, rel: str, prefix: str, after: str | None
    ) -> Generator[tuple[str, os.DirEntry[str]]]:
        """(key, entry) of the files under `folder` whose keys start with `prefix` and come
        after `after`, in key order. A folder's entries sort by name + '/' ('a.b' < 'a/x'),
        which orders the whole tree by key; subtrees wholly before `after` are skipped."""
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return
        children: list[tuple[str, bool, os.DirEntry[str]]] = []
        for entry in entries:
            if entry.name.startswith(_RESERVED):
                continue
            if entry.is_dir(follow_symlinks=False):
                key = f"{rel}{entry.name}/"
                if not (key.startswith(prefix) or prefix.startswith(key)):
                    continue
                if after is not None and after > key and not after.startswith(key):
                    continue
                children.append((key, True, entry))
            elif entry.is_file():
                key = f"{rel}{entry.name}"
                if key.startswith(prefix) and (after is None or key > after):
                    children.append((key, False, entry))
        children.sort(key=lambda child: child[0])
        for key, is_dir, entry in children:
            if is_dir:
                yield from self._walk(Path(entry.path), key, prefix, after)
            else:
                yield key, entry

    def _replace_into(self, path: Path, key: str, fill: Callable[[Path], object]) -> os.stat_result:
        """Write a temp file beside `path` with `fill`, then rename it over `path`: readers see
        the old object or the new one, never a part. No fsync: a crash may lose the last
        writes, which an import redoes, but never shows a torn file under a real key."""
        self._check_bucket()
        tmp = path.parent / f"{_RESERVED}tmp-{uuid.uuid4().hex}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fill(tmp)
            # Stat the file written, after its rename (which changes its ctime, part of the
            # ETag), through a descriptor: not whatever a concurrent writer put at `path`.
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.replace(tmp, path)
                st = os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _translate(exc, key, writing=True) from exc
        finally:
            with contextlib.suppress(OSError):  # gone already, or its folder never was
                tmp.unlink(missing_ok=True)
        return st

    def _copy_source(self, source: ObjectStore, key: str) -> LocalStore:
        if not isinstance(source, LocalStore):
            raise StorageError(
                ErrorKind.UNSUPPORTED,
                f"no server-side copy from {source.location} to {self.location}",
                key=key,
            )
        return source

    def _upload_dir(self, key: str, upload_id: str) -> Path:
        if not upload_id.isalnum():
            raise not_found(key, f"no multipart upload {upload_id}")
        folder = self._dir / _UPLOADS / upload_id
        try:
            owner = (folder / "key").read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            owner = None
        except OSError as exc:
            raise _translate(exc, key) from exc
        if owner != key:
            raise not_found(key, f"no multipart upload {upload_id}")
        return folder

    def _store_part(
        self, key: str, upload_id: str, number: int, etag: str, fill: Callable[[Path], object]
    ) -> None:
        if not 1 <= number <= 10_000:
            raise StorageError(
                ErrorKind.PRECONDITION_FAILED, f"part number {number} is not in 1..10000", key=key
            )
        folder = self._upload_dir(key, upload_id)
        # The ETag is in the file name, so completing checks it without reading the part.
        for stale in folder.glob(f"{number:05d}.*"):
            stale.unlink(missing_ok=True)
        self._replace_into(folder / f"{number:05d}.{etag}", key, fill)


def _part_files(key: str, folder: Path, parts: Sequence[UploadedPart]) -> list[Path]:
    if not parts:
        raise StorageError(ErrorKind.PRECONDITION_FAILED, "no parts to complete", key=key)
    files: list[Path] = []
    previous = 0
    for part in parts:
        if part.number <= previous:
            raise StorageError(ErrorKind.PRECONDITION_FAILED, "parts out of order", key=key)
        path = folder / f"{part.number:05d}.{part.etag.strip(chr(34))}"
        if not path.is_file():
            raise StorageError(
                ErrorKind.PRECONDITION_FAILED, f"part {part.number} was not uploaded", key=key
            )
        files.append(path)
        previous = part.number
    return files


def _join(folder: Path, key: str) -> Path:
    """`folder / key`, refusing keys that would leave `folder` or that a file system cannot
    hold as the same key."""
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
    return folder.joinpath(*segments)


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


def _translate(exc: OSError, key: str | None, *, writing: bool = False) -> StorageError:
    """The one place an OSError becomes a StorageError. When writing, a file or folder in the
    way of the key is ALREADY_EXISTS; when reading, it means no object there."""
    if isinstance(exc, FileNotFoundError):
        return StorageError(ErrorKind.NOT_FOUND, "no such object", key=key, status=404)
    if isinstance(exc, PermissionError):
        return StorageError(ErrorKind.PERMISSION_DENIED, str(exc), key=key, status=403)
    if isinstance(exc, NotADirectoryError | IsADirectoryError | FileExistsError):
        if writing:
            return StorageError(
                ErrorKind.ALREADY_EXISTS, "a file or folder is in the way of the key", key=key
            )
        return StorageError(ErrorKind.NOT_FOUND, "no such object", key=key, status=404)
    if exc.errno == errno.ENAMETOOLONG:
        return StorageError(ErrorKind.INVALID_CONFIG, "key too long for a file name", key=key)
    if exc.errno in (errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN):
        return StorageError(ErrorKind.UNAVAILABLE, str(exc), key=key)
    return StorageError(ErrorKind.UNEXPECTED, str(exc), key=key, transient=False)
