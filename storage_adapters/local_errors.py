"""How an OSError becomes a StorageError: the local adapter's one error mapping."""

from __future__ import annotations

import errno

from storage_adapters.errors import ErrorKind, StorageError


def translate(exc: OSError, key: str | None, *, writing: bool = False) -> StorageError:
    """The one place an OSError becomes a StorageError. When writing, a file or folder in the
    way of the key is ALREADY_EXISTS; when reading, it means no object there. A symbolic
    link on the key's path (ELOOP: never followed) is PERMISSION_DENIED."""
    if exc.errno == errno.ELOOP:
        return StorageError(
            ErrorKind.PERMISSION_DENIED,
            "the key's path goes through a symbolic link, which local storage never follows",
            key=key,
            status=403,
        )
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
