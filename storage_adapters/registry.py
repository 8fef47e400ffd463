"""Which adapter serves which provider name; adapters are imported only when first opened."""

from __future__ import annotations

import importlib
from typing import Any

from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.errors import ErrorKind, StorageError

# provider -> (module, class, the distribution that module needs, talks over a network)
_ADAPTERS: dict[str, tuple[str, str, str, bool]] = {
    "s3": ("storage_adapters.s3", "S3Store", "boto3", True),
    "oss": ("storage_adapters.oss", "OssStore", "oss2", True),
    "azure": ("storage_adapters.azure_blob", "AzureBlobStore", "azure-storage-blob", True),
    "local": ("storage_adapters.local", "LocalStore", "bayport", False),
    "memory": ("storage_adapters.memory", "MemoryStore", "bayport", False),
}
# Options every caller may pass whatever the provider; in-process adapters have no use for them.
_NETWORK_OPTIONS = frozenset({"timeout", "max_pool_connections"})


def known_providers() -> list[str]:
    return sorted(_ADAPTERS)


def import_adapters() -> list[str]:
    """Import every adapter whose SDK is installed (the worker's parent does, before it forks
    its pool: each pool process then shares those pages instead of importing the SDKs on its
    first task, a second or so into someone's job). Returns the providers imported."""
    imported = []
    for provider, (module_name, _class, _distribution, _networked) in sorted(_ADAPTERS.items()):
        try:
            importlib.import_module(module_name)
        except ImportError:
            continue  # its SDK is not installed: open_store says so when it is named
        imported.append(provider)
    return imported


def open_store(spec: StorageSpec, **opts: Any) -> ObjectStore:
    """The store `spec` describes. `opts` go to the adapter's constructor; `timeout` and
    `max_pool_connections` are accepted for every provider and dropped where meaningless."""
    provider = spec.provider.lower()
    if provider not in _ADAPTERS:
        raise StorageError(
            ErrorKind.INVALID_CONFIG,
            f"unknown storage provider {spec.provider!r}; known: {', '.join(known_providers())}",
        )
    module_name, class_name, distribution, networked = _ADAPTERS[provider]
    if not networked:
        opts = {name: value for name, value in opts.items() if name not in _NETWORK_OPTIONS}
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StorageError(
            ErrorKind.INVALID_CONFIG,
            f"the {provider!r} adapter cannot be imported ({exc}); "
            f"install it with: pip install {distribution}",
        ) from exc
    try:
        store: ObjectStore = getattr(module, class_name).from_spec(spec, **opts)
    except TypeError as exc:  # an option this adapter does not take
        raise StorageError(ErrorKind.INVALID_CONFIG, f"{provider!r} storage: {exc}") from exc
    return store
