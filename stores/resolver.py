"""Opens the object store behind a storage config, once per process, credentials in memory."""

from __future__ import annotations

import threading

from bayport.logs import redact
from bayport.settings import Settings
from crypto.secretbox import SecretBox
from metadata.models import StorageConfig
from storage_adapters.base import ObjectStore, StorageSpec
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.registry import open_store
from storage_adapters.throttled import ThrottledStore
from stores.endpoints import EndpointPolicy, EndpointRefused, EndpointUnresolved
from stores.local_roots import LocalFolderRefused, LocalRoots
from stores.throttle import Cap, Throttle

# Providers whose accounts answer "slow down" to the requests of all workers together.
QUOTA_PROVIDERS = frozenset({"s3", "oss", "azure"})


def spec_for_config(
    config: StorageConfig,
    box: SecretBox,
    *,
    endpoints: EndpointPolicy,
    at_bucket_root: bool = False,
) -> StorageSpec:
    """The spec to open the config's store with; every connection the store makes is
    guarded by the operator's endpoint policy (`endpoints`)."""
    credentials = box.open(config.credentials_encrypted)
    # Decrypted secrets exist in memory only; the records of the work using them mask them.
    redact(*secret_values(credentials))
    return StorageSpec(
        provider=config.provider,
        bucket=config.bucket_name,
        root="" if at_bucket_root else config.file_path,
        endpoint=config.endpoint,
        region=config.region,
        credentials=credentials,
        guard=endpoints.guard(),
    )


def adapter_options(spec: StorageSpec, settings: Settings) -> dict[str, object]:
    """The settings that reach one provider's adapter as options of its constructor."""
    if spec.provider == "azure":
        return {"pull_from_url": settings.azure_pull_from_url}
    return {}


def secret_values(credentials: dict[str, str]) -> list[str]:
    """A config's credentials that are secret (not its key id or account name)."""
    return [v for k, v in credentials.items() if not k.endswith(("_id", "_name"))]


def check_config_endpoint(config: StorageConfig, endpoints: EndpointPolicy) -> None:
    """Refuse to open a store whose endpoint (or the host its SDK contacts: OSS's
    `bucket.endpoint`) resolves to a loopback, private or link-local address the operator did
    not allow (a permanent error: the job or its objects fail with the reason). Checked again
    on every open: a name public when the config was made may resolve elsewhere now; and the
    store's connections are checked again each (the spec's guard). A name that does not
    resolve now is a transient failure: nothing was contacted."""
    try:
        endpoints.check(config.provider, config.endpoint, config.bucket_name)
    except EndpointUnresolved as exc:
        raise StorageError(
            ErrorKind.UNAVAILABLE,
            f"storage config {config.name!r}: endpoint refused: {exc}",
            transient=True,
        ) from exc
    except EndpointRefused as exc:
        raise StorageError(
            ErrorKind.INVALID_CONFIG,
            f"storage config {config.name!r}: endpoint refused: {exc}",
            transient=False,
        ) from exc


def check_config_folder(config: StorageConfig, roots: LocalRoots) -> None:
    """Refuse to open a local config whose folder is not (or no longer: the settings changed,
    the row was written by hand) inside its workspace's own folders of BAYPORT_LOCAL_ROOTS,
    or reaches Bayport's own files (a permanent error)."""
    if config.provider != "local":
        return
    try:
        roots.check(config.workspace_id, config.bucket_name)
    except LocalFolderRefused as exc:
        raise StorageError(
            ErrorKind.PERMISSION_DENIED,
            f"storage config {config.name!r}: folder refused: {exc}",
            transient=False,
        ) from exc


class ConfigStores:
    """The StoreResolver of the running service. Stores (and their connection pools) are
    cached by config id and the config's sealed credentials, so a re-created config with
    new keys gets a new client. Each store passes the process's Throttle first: its
    provider account's shared rate (while throttled) and the config's caps."""

    def __init__(
        self, settings: Settings, box: SecretBox, *, endpoints: EndpointPolicy | None = None
    ) -> None:
        self._settings = settings
        self._box = box
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, bytes, float | None, int | None, bool], ObjectStore] = {}
        self._secrets: dict[str, list[str]] = {}  # by config id, for each work that uses it
        self._default: ObjectStore | None = None
        self.throttle = Throttle.from_settings(settings)
        self.endpoints = endpoints or EndpointPolicy.from_settings(
            settings.allowed_private_endpoints
        )
        self._local_roots = LocalRoots.from_settings(settings)
        self._local_roots.check_settings()  # (SettingsError: no start with an unsafe root)

    def for_config(self, config: StorageConfig, *, at_bucket_root: bool = False) -> ObjectStore:
        caps = (config.max_requests_per_second, config.max_bytes_per_second)
        cache_key = (config.id, config.credentials_encrypted, *caps, at_bucket_root)
        check_config_folder(config, self._local_roots)  # every call, cached store or not
        with self._lock:
            store = self._cache.get(cache_key)
            if store is not None:
                # A cached store: the work asking for it now masks the config's secrets too.
                redact(*self._secrets.get(config.id, ()))
            else:
                check_config_endpoint(config, self.endpoints)
                spec = spec_for_config(
                    config, self._box, endpoints=self.endpoints, at_bucket_root=at_bucket_root
                )
                self._secrets[config.id] = secret_values(spec.credentials)
                store = open_store(
                    spec,
                    timeout=self._settings.storage_timeout,
                    **adapter_options(spec, self._settings),
                )
                # In-process stores (a local folder, memory) have no provider quota to
                # share; their caps still hold.
                shared = config.provider in QUOTA_PROVIDERS
                gate = self.throttle.gate(
                    account=store.account if shared else None,
                    caps=[Cap(f"config:{config.id}", *caps)],
                )
                if gate is not None:
                    store = ThrottledStore(store, gate)
                # A config re-sealed (key rotation) or given new caps: its old client goes
                # (copies still holding it finish with it).
                for stale in [
                    k for k in self._cache if k[0] == config.id and k[1:4] != cache_key[1:4]
                ]:
                    del self._cache[stale]
                self._cache[cache_key] = store
            return store

    def default_storage(self) -> ObjectStore:
        with self._lock:
            if self._default is None:
                folder = self._settings.resolved_default_storage_dir
                folder.mkdir(parents=True, exist_ok=True)
                self._default = open_store(StorageSpec(provider="local", bucket=str(folder)))
            return self._default
