"""/v1/storage-configs: authorized storage configs. Secrets go in sealed and never come out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Response, status
from sqlalchemy.exc import IntegrityError

from api.deps import ContainerDep, WorkspaceDep
from api.schemas import (
    AzureConfigCreate,
    LocalConfigCreate,
    StorageConfigCreate,
    StorageConfigPublic,
)
from bayport.deadline import DeadlineExceeded, call_within
from bayport.endpoints import EndpointRefused
from bayport.local_roots import LocalFolderRefused, LocalRoots
from bayport.secretbox import mask
from bayport.stores import spec_for_config
from metadata import repository as repo
from metadata.models import StorageConfig
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.registry import open_store

router = APIRouter(prefix="/v1/storage-configs", tags=["storage configs"])


def public(config: StorageConfig) -> StorageConfigPublic:
    common: dict[str, Any] = {
        "name": config.name,
        "provider": config.provider,
        "file_path": config.file_path,
        "endpoint": config.endpoint,
        "max_requests_per_second": config.max_requests_per_second,
        "max_bytes_per_second": config.max_bytes_per_second,
        "created_at": config.created_at,
    }
    if config.provider == "azure":
        return StorageConfigPublic(
            **common,
            account_type=config.account_type,
            account_name=config.credentials_hint,
            container_name=config.bucket_name,
        )
    return StorageConfigPublic(
        **common,
        region=config.region,
        bucket_name=config.bucket_name,
        accesskey_id=config.credentials_hint or None,
    )


def _field_error(field: str, message: str, *, provider: str) -> HTTPException:
    return HTTPException(
        422, [{"loc": ["body", provider, field], "type": "value_error", "msg": message}]
    )


def _check_local_folder(
    container: ContainerDep, body: LocalConfigCreate, workspace_id: str
) -> None:
    """Only the workspace's own folders of BAYPORT_LOCAL_ROOTS (bayport/local_roots.py)."""
    try:
        LocalRoots.from_settings(container.settings).check(workspace_id, body.bucket_name)
    except LocalFolderRefused as exc:
        raise _field_error("bucket_name", str(exc), provider="local") from exc


def _new_config(workspace_id: str, body: Any, container: ContainerDep) -> StorageConfig:
    common = {
        "workspace_id": workspace_id,
        "name": body.name,
        "provider": body.provider,
        "file_path": body.file_path,
        "max_requests_per_second": body.max_requests_per_second,
        "max_bytes_per_second": body.max_bytes_per_second,
    }
    box = container.box
    if isinstance(body, AzureConfigCreate):
        return StorageConfig(
            **common,
            endpoint=body.account_url(),
            bucket_name=body.container_name,
            account_type=body.account_type,
            credentials_hint=body.account_name,
            credentials_encrypted=box.seal(
                {
                    "account_name": body.account_name,
                    "account_key": body.account_key.get_secret_value(),
                }
            ),
        )
    if isinstance(body, LocalConfigCreate):
        _check_local_folder(container, body, workspace_id)
        return StorageConfig(
            **common, bucket_name=body.bucket_name, credentials_encrypted=box.seal({})
        )
    return StorageConfig(
        **common,
        endpoint=body.endpoint,
        region=getattr(body, "region", None),
        bucket_name=body.bucket_name,
        credentials_hint=mask(body.accesskey_id),
        credentials_encrypted=box.seal(
            {
                "accesskey_id": body.accesskey_id,
                "accesskey_secret": body.accesskey_secret.get_secret_value(),
            }
        ),
    )


def _check_endpoint(config: StorageConfig, container: ContainerDep, *, named: bool) -> None:
    """No endpoint that resolves to a loopback, private or link-local address (SSRF),
    unless the operator allows it; the hosts the provider's SDK contacts count too (OSS's
    `bucket.endpoint`), and a name that does not resolve is refused."""
    try:
        container.endpoints.check(
            config.provider, config.endpoint, config.bucket_name, must_resolve=named
        )
    except EndpointRefused as exc:
        raise _field_error("endpoint", str(exc), provider=config.provider) from exc


# Which field a failed check points at.
_CHECK_FIELD = {
    ErrorKind.NOT_FOUND: "bucket_name",
    ErrorKind.PERMISSION_DENIED: "accesskey_secret",
    ErrorKind.INVALID_CONFIG: "endpoint",
    ErrorKind.UNAVAILABLE: "endpoint",
}
_AZURE_FIELD = {"bucket_name": "container_name", "accesskey_secret": "account_key"}


def _verify(config: StorageConfig, container: ContainerDep) -> None:
    """One cheap listing with the new credentials: a wrong bucket, key or endpoint is a
    422 with the provider's reason now, not a failed import later. All of it within
    BAYPORT_CONFIG_CHECK_DEADLINE (bayport/deadline.py): an endpoint that answers slowly,
    or a byte at a time, is a 504 naming it then, and its connections are cut."""
    seconds = container.settings.config_check_deadline

    def check() -> None:
        spec = spec_for_config(config, container.box, endpoints=container.endpoints)
        store = open_store(spec, timeout=min(15, seconds))
        store.list_page("", limit=1)

    try:
        call_within(check, seconds=seconds, name="config-check")
    except DeadlineExceeded as exc:
        raise HTTPException(
            504,
            [
                {
                    "loc": ["body", config.provider, "endpoint"],
                    "type": "timeout",
                    "msg": f"the storage endpoint {config.endpoint or '(the provider default)'} "
                    f"did not answer the check within {seconds:g} s "
                    "(BAYPORT_CONFIG_CHECK_DEADLINE): it is too slow or unreachable",
                }
            ],
        ) from exc
    except StorageError as exc:
        field = _CHECK_FIELD.get(exc.kind, "endpoint")
        if config.provider == "azure":
            field = _AZURE_FIELD.get(field, field)
        raise _field_error(
            field, f"the storage refused the config: {exc}", provider=config.provider
        ) from exc


@router.post("", status_code=status.HTTP_201_CREATED, response_model=StorageConfigPublic)
def create_storage_config(
    body: Annotated[StorageConfigCreate, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    verify: Annotated[bool, Query(description="Check the config with one listing")] = True,
) -> StorageConfigPublic:
    config = _new_config(workspace_id, body, container)
    with container.db.uow() as uow:
        if repo.get_config(uow.session, workspace_id=workspace_id, name=body.name):
            raise HTTPException(409, f"storage config {body.name!r} already exists")
    # An Azure account URL Bayport derived (no endpoint given) is Azure's own domain: it may
    # not resolve before the account exists; a named endpoint must.
    _check_endpoint(config, container, named=getattr(body, "endpoint", None) is not None)
    if verify:
        _verify(config, container)
    with container.db.uow() as uow:
        uow.session.add(config)
        try:
            uow.commit()
        except IntegrityError as exc:
            raise HTTPException(409, f"storage config {body.name!r} already exists") from exc
    return public(config)


@router.get("", response_model=list[StorageConfigPublic])
def list_storage_configs(
    workspace_id: WorkspaceDep, container: ContainerDep
) -> list[StorageConfigPublic]:
    with container.db.uow() as uow:
        return [public(c) for c in repo.list_configs(uow.session, workspace_id=workspace_id)]


def _get(container: ContainerDep, workspace_id: str, name: str) -> StorageConfig:
    with container.db.uow() as uow:
        config = repo.get_config(uow.session, workspace_id=workspace_id, name=name)
    if config is None:
        raise HTTPException(404, f"storage config {name!r} does not exist")
    return config


@router.get("/{name}", response_model=StorageConfigPublic)
def get_storage_config(
    name: str, workspace_id: WorkspaceDep, container: ContainerDep
) -> StorageConfigPublic:
    return public(_get(container, workspace_id, name))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_storage_config(
    name: str, workspace_id: WorkspaceDep, container: ContainerDep
) -> Response:
    with container.db.uow() as uow:
        config = repo.get_config(uow.session, workspace_id=workspace_id, name=name)
        if config is None:
            raise HTTPException(404, f"storage config {name!r} does not exist")
        if repo.config_in_use(uow.session, config_id=config.id):
            raise HTTPException(409, f"storage config {name!r} is used by datasets or import jobs")
        uow.session.delete(config)
        uow.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
