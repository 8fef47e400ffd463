"""The storage layer: one ObjectStore port, one adapter per provider, one error vocabulary."""

from storage_adapters.base import (
    Capabilities,
    ListPage,
    ObjectInfo,
    ObjectStore,
    StorageSpec,
    UploadedPart,
)
from storage_adapters.errors import ErrorKind, StorageError

__all__ = [
    "Capabilities",
    "ErrorKind",
    "ListPage",
    "ObjectInfo",
    "ObjectStore",
    "StorageError",
    "StorageSpec",
    "UploadedPart",
]
