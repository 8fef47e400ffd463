"""The storage-config use cases: create (checked once), list, get, delete. Secrets go in
sealed and never come out.

Both HTTP faces call these (api/routes_storage.py, tensorbay_api/routes_storage.py) and
shape the answer: the errors are the service vocabulary (importer/errors.py), an Invalid's
or a TimedOut's `field` naming the field of the create request (services/
storage_config_requests.py) it is about.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from bayport.settings import Settings
from crypto.secretbox import SecretBox, mask
from importer.errors import Conflict, Invalid, NotFound, TimedOut
from metadata.db import Database
from metadata.models import StorageConfig
from metadata.queries import storage_configs
from services.storage_config_requests import (
    AzureConfigCreate,
    LocalConfigCreate,
    StorageConfigCreate,
)
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.registry import open_store
from stores.deadline import DeadlineExceeded, call_within
from stores.endpoints import EndpointPolicy, EndpointRefused
from stores.local_roots import LocalFolderRefused, LocalRoots
from stores.resolver import spec_for_config


def create_storage_config(
    request: StorageConfigCreate,
    *,
    workspace_id: str,
    db: Database,
    box: SecretBox,
    endpoints: EndpointPolicy,
    settings: Settings,
    verify: bool = True,
) -> StorageConfig:
    """The new config, its credentials sealed, once its folder (a local config), its
    endpoint (SSRF) and, with `verify`, one listing with it have passed."""
    config = _new_config(workspace_id, request, box, settings)
    with db.uow() as uow:
        if storage_configs.get_config(uow.session, workspace_id=workspace_id, name=request.name):
            raise Conflict(f"storage config {request.name!r} already exists")
    # An Azure account URL Bayport derived (no endpoint given) is Azure's own domain: it may
    # not resolve before the account exists; a named endpoint must.
    _check_endpoint(config, endpoints, named=getattr(request, "endpoint", None) is not None)
    if verify:
        _verify(config, box, endpoints, settings)
    with db.uow() as uow:
        uow.session.add(config)
        try:
            uow.commit()
        except IntegrityError as exc:
            raise Conflict(f"storage config {request.name!r} already exists") from exc
    return config


def list_storage_configs(*, workspace_id: str, db: Database) -> list[StorageConfig]:
    with db.uow() as uow:
        return list(storage_configs.list_configs(uow.session, workspace_id=workspace_id))


def get_storage_config(name: str, *, workspace_id: str, db: Database) -> StorageConfig:
    with db.uow() as uow:
        config = storage_configs.get_config(uow.session, workspace_id=workspace_id, name=name)
    if config is None:
        raise NotFound(f"storage config {name!r} does not exist")
    return config


def delete_storage_config(name: str, *, workspace_id: str, db: Database) -> None:
    """Refused while a dataset or an import job uses the config."""
    with db.uow() as uow:
        config = storage_configs.get_config(uow.session, workspace_id=workspace_id, name=name)
        if config is None:
            raise NotFound(f"storage config {name!r} does not exist")
        if storage_configs.config_in_use(uow.session, config_id=config.id):
            raise Conflict(f"storage config {name!r} is used by datasets or import jobs")
        uow.session.delete(config)
        uow.commit()


def _check_local_folder(settings: Settings, request: LocalConfigCreate, workspace_id: str) -> None:
    """Only the workspace's own folders of BAYPORT_LOCAL_ROOTS (stores/local_roots.py)."""
    try:
        LocalRoots.from_settings(settings).check(workspace_id, request.bucket_name)
    except LocalFolderRefused as exc:
        raise Invalid(str(exc), field="bucket_name") from exc


def _new_config(
    workspace_id: str, request: Any, box: SecretBox, settings: Settings
) -> StorageConfig:
    common = {
        "workspace_id": workspace_id,
        "name": request.name,
        "provider": request.provider,
        "file_path": request.file_path,
        "max_requests_per_second": request.max_requests_per_second,
        "max_bytes_per_second": request.max_bytes_per_second,
    }
    if isinstance(request, AzureConfigCreate):
        return StorageConfig(
            **common,
            endpoint=request.account_url(),
            bucket_name=request.container_name,
            account_type=request.account_type,
            credentials_hint=request.account_name,
            credentials_encrypted=box.seal(
                {
                    "account_name": request.account_name,
                    "account_key": request.account_key.get_secret_value(),
                }
            ),
        )
    if isinstance(request, LocalConfigCreate):
        _check_local_folder(settings, request, workspace_id)
        return StorageConfig(
            **common, bucket_name=request.bucket_name, credentials_encrypted=box.seal({})
        )
    return StorageConfig(
        **common,
        endpoint=request.endpoint,
        region=getattr(request, "region", None),
        bucket_name=request.bucket_name,
        credentials_hint=mask(request.accesskey_id),
        credentials_encrypted=box.seal(
            {
                "accesskey_id": request.accesskey_id,
                "accesskey_secret": request.accesskey_secret.get_secret_value(),
            }
        ),
    )


def _check_endpoint(config: StorageConfig, endpoints: EndpointPolicy, *, named: bool) -> None:
    """No endpoint that resolves to a loopback, private or link-local address (SSRF),
    unless the operator allows it; the hosts the provider's SDK contacts count too (OSS's
    `bucket.endpoint`), and a name that does not resolve is refused."""
    try:
        endpoints.check(config.provider, config.endpoint, config.bucket_name, must_resolve=named)
    except EndpointRefused as exc:
        raise Invalid(str(exc), field="endpoint") from exc


# Which field a failed check points at.
_CHECK_FIELD = {
    ErrorKind.NOT_FOUND: "bucket_name",
    ErrorKind.PERMISSION_DENIED: "accesskey_secret",
    ErrorKind.INVALID_CONFIG: "endpoint",
    ErrorKind.UNAVAILABLE: "endpoint",
}
_AZURE_FIELD = {"bucket_name": "container_name", "accesskey_secret": "account_key"}


def _verify(
    config: StorageConfig, box: SecretBox, endpoints: EndpointPolicy, settings: Settings
) -> None:
    """One cheap listing with the new credentials: a wrong bucket, key or endpoint is
    Invalid with the provider's reason now, not a failed import later. All of it within
    BAYPORT_CONFIG_CHECK_DEADLINE (stores/deadline.py): an endpoint that answers slowly,
    or a byte at a time, is TimedOut naming it then, and its connections are cut."""
    seconds = settings.config_check_deadline

    def check() -> None:
        spec = spec_for_config(config, box, endpoints=endpoints)
        store = open_store(spec, timeout=min(15, seconds))
        store.list_page("", limit=1)

    try:
        call_within(check, seconds=seconds, name="config-check")
    except DeadlineExceeded as exc:
        raise TimedOut(
            f"the storage endpoint {config.endpoint or '(the provider default)'} "
            f"did not answer the check within {seconds:g} s "
            "(BAYPORT_CONFIG_CHECK_DEADLINE): it is too slow or unreachable",
            field="endpoint",
        ) from exc
    except StorageError as exc:
        field = _CHECK_FIELD.get(exc.kind, "endpoint")
        if config.provider == "azure":
            field = _AZURE_FIELD.get(field, field)
        raise Invalid(f"the storage refused the config: {exc}", field=field) from exc
