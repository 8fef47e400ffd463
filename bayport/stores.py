"""Opens the object store behind a storage config, once per process, credentials in memory."""

from __future__ import annotations

import threading

from bayport.logs import redact
from bayport.secretbox import SecretBox
from bayport.settings import Settings
from metadata.models import StorageConfig
from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.registry import open_store


def spec_for_config(config: StorageConfig, box: SecretBox) -> StorageSpec:
    credentials = box.open(config.credentials_encrypted)
    # Decrypted secrets exist in memory only; logs mask them wherever they would appear.
    redact(*(v for k, v in credentials.items() if not k.endswith(("_id", "_name"))))
    return StorageSpec(
        provider=config.provider,
        bucket=config.bucket_name,
        root=config.file_path,
        endpoint=config.endpoint,
        region=config.region,
        credentials=credentials,
    )


class ConfigStores:
    """The StoreResolver of the running service. Stores (and their connection pools) are
    cached by config id and the config's sealed credentials, so a re-created config with
    new keys gets a new client."""

    def __init__(self, settings: Settings, box: SecretBox) -> None:
        self._settings = settings
        self._box = box
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, bytes], ObjectStore] = {}
        self._default: ObjectStore | None = None

    def for_config(self, config: StorageConfig) -> ObjectStore:
        cache_key = (config.id, config.credentials_encrypted)
        with self._lock:
            store = self._cache.get(cache_key)
            if store is None:
                store = open_store(
                    spec_for_config(config, self._box), timeout=self._settings.storage_timeout
                )
                self._cache[cache_key] = store
            return store

    def default_storage(self) -> ObjectStore:
        with self._lock:
            if self._default is None:
                folder = self._settings.resolved_default_storage_dir
                folder.mkdir(parents=True, exist_ok=True)
                self._default = open_store(StorageSpec(provider="local", bucket=str(folder)))
            return self._default
