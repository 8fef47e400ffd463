"""Folders and files under a local storage folder, opened without following symbolic links.

Anyone who can write to a folder Bayport reads or writes can plant a symlink in it (to
`/etc`, to Bayport's own `secret.key`). Paths are therefore never handed to the kernel whole:
each folder is opened on its own, relative to the one above it (`openat`) with O_NOFOLLOW,
from `/` down, so a symlink anywhere on the way fails (ELOOP) instead of being followed, and
a folder swapped for a symlink after a check is caught by the next call.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path

# A folder to walk through or work in. O_PATH (Linux) needs no read permission on the folders
# above; elsewhere the folder is opened for reading.
_WALK = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A folder to list.
_LIST = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A file to read: O_NONBLOCK so a FIFO planted under a key cannot hang the reader (it is then
# refused as not a regular file); regular files ignore it.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# A new file to fill: never an existing one, never through a symlink.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class BaseFolderError(Exception):
    """The storage folder itself is missing (`missing`) or now goes through a symlink."""

    def __init__(self, folder: Path, *, missing: bool) -> None:
        self.folder = folder
        self.missing = missing
        why = "does not exist" if missing else "goes through a symbolic link"
        super().__init__(f"folder {folder} {why}")


def symlink_error(name: str) -> OSError:
    return OSError(errno.ELOOP, "a symbolic link is on the key's path", name)


def _open_child(fd: int, name: str, flags: int) -> int:
    """`name` in the folder `fd`, not followed if it is a symlink (ELOOP then, whatever
    O_DIRECTORY made of it)."""
    try:
        return os.open(name, flags, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP) and is_symlink(fd, name):
            raise symlink_error(name) from exc
        raise


def is_symlink(fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_base(base: Path) -> int:
    """The folder `base` (absolute, resolved when the store was made), walked from `/`."""
    fd = os.open("/", _WALK)
    try:
        for name in base.parts[1:]:
            child = _open_child(fd, name, _WALK)
            os.close(fd)
            fd = child
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise BaseFolderError(base, missing=True) from exc
        if exc.errno == errno.ELOOP:
            raise BaseFolderError(base, missing=False) from exc
        raise
    return fd


def open_folder(base: Path, segments: Sequence[str], *, create: bool = False) -> int:
    """The folder `base/segments` (created, with its parents, if `create`), no component
    followed if a symlink. OSError for a segment missing, a file or a symlink (ELOOP)."""
    fd = open_base(base)
    try:
        for name in segments:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=fd)
            child = _open_child(fd, name, _WALK)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def subfolder(fd: int, name: str) -> Iterator[int]:
    """The folder `name` in the folder `fd` (ELOOP if a symlink)."""
    child = _open_child(fd, name, _WALK)
    try:
        yield child
    finally:
        os.close(child)


def reopen_for_listing(fd: int) -> int:
    return os.open(".", _LIST, dir_fd=fd)


def open_subfolder_for_listing(fd: int, name: str) -> int:
    return _open_child(fd, name, _LIST)


def open_file(fd: int, name: str) -> int:
    """The regular file `name` in the folder `fd`, for reading (FileNotFoundError if it is
    not a regular file: a folder, a FIFO; ELOOP if a symlink)."""
    file_fd = _open_child(fd, name, _READ)
    try:
        if not stat.S_ISREG(os.fstat(file_fd).st_mode):
            raise FileNotFoundError(errno.ENOENT, "not a file", name)
        os.set_blocking(file_fd, True)
    except BaseException:
        os.close(file_fd)
        raise
    return file_fd


def create_file(fd: int, name: str) -> int:
    return os.open(name, _CREATE, 0o666, dir_fd=fd)


def lstat(fd: int, name: str) -> os.stat_result:
    return os.stat(name, dir_fd=fd, follow_symlinks=False)


def refuse_symlink(fd: int, name: str) -> None:
    """An existing `name` that is a symlink is refused (ELOOP), one that is missing is not."""
    if is_symlink(fd, name):
        raise symlink_error(name)


def read_text(fd: int, name: str) -> str:
    with os.fdopen(open_file(fd, name), "rb") as f:
        return f.read().decode("utf-8")


def list_names(fd: int) -> list[str]:
    listing = reopen_for_listing(fd)
    try:
        return os.listdir(listing)
    finally:
        os.close(listing)


def walk_files(
    fd: int, rel: str, prefix: str, after: str | None, *, hidden: str
) -> Generator[tuple[str, os.stat_result]]:
    """(key, stat) of the files under the folder `fd` whose keys start with `prefix` and
    come after `after`, in key order. A folder's entries sort by name + '/' ('a.b' < 'a/x'),
    which orders the whole tree by key; subtrees wholly before `after` are skipped, and so
    are names starting with `hidden`. Symlinks are skipped, and so is a folder swapped for
    one since it was read."""
    listing = reopen_for_listing(fd)
    try:
        with os.scandir(listing) as it:
            entries = list(it)
        children: list[tuple[str, bool, str]] = []
        for entry in entries:
            if entry.name.startswith(hidden):
                continue
            if entry.is_dir(follow_symlinks=False):
                key = f"{rel}{entry.name}/"
                if not (key.startswith(prefix) or prefix.startswith(key)):
                    continue
                if after is not None and after > key and not after.startswith(key):
                    continue
                children.append((key, True, entry.name))
            elif entry.is_file(follow_symlinks=False):
                key = f"{rel}{entry.name}"
                if key.startswith(prefix) and (after is None or key > after):
                    children.append((key, False, entry.name))
        children.sort(key=lambda child: child[0])
        for key, is_dir, name in children:
            try:
                if is_dir:
                    sub = open_subfolder_for_listing(listing, name)
                else:
                    st = lstat(listing, name)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    continue  # deleted, or swapped for a symlink, since the folder was read
                raise
            if not is_dir:
                if stat.S_ISREG(st.st_mode):
                    yield key, st
                continue
            try:
                yield from walk_files(sub, key, prefix, after, hidden=hidden)
            finally:
                os.close(sub)
    finally:
        os.close(listing)
