"""/v1/storage-configs: authorized storage configs (services/storage_configs.py holds the use
cases). Secrets go in sealed and never come out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Response, status

from api.deps import ContainerDep, WorkspaceDep
from api.schemas import StorageConfigPublic
from importer.errors import Invalid, TimedOut
from metadata.models import StorageConfig
from services import storage_configs
from services.storage_config_requests import StorageConfigCreate

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


def _field_error(
    exc: Invalid | TimedOut, *, provider: str, status_code: int = 422, kind: str = "value_error"
) -> HTTPException:
    """A refusal of the request's `field` as FastAPI words a body's: under
    `["body", <provider>, <field>]`."""
    return HTTPException(
        status_code,
        [{"loc": ["body", provider, exc.field or "endpoint"], "type": kind, "msg": exc.message}],
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=StorageConfigPublic)
def create_storage_config(
    body: Annotated[StorageConfigCreate, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    verify: Annotated[bool, Query(description="Check the config with one listing")] = True,
) -> StorageConfigPublic:
    # A wrong folder, endpoint, bucket or key is a 422 naming its field; an endpoint too slow
    # to answer the check (BAYPORT_CONFIG_CHECK_DEADLINE) a 504; a taken name a 409.
    try:
        config = storage_configs.create_storage_config(
            body,
            workspace_id=workspace_id,
            db=container.db,
            box=container.box,
            endpoints=container.endpoints,
            settings=container.settings,
            verify=verify,
        )
    except Invalid as exc:
        raise _field_error(exc, provider=body.provider) from exc
    except TimedOut as exc:
        raise _field_error(exc, provider=body.provider, status_code=504, kind="timeout") from exc
    return public(config)


@router.get("", response_model=list[StorageConfigPublic])
def list_storage_configs(
    workspace_id: WorkspaceDep, container: ContainerDep
) -> list[StorageConfigPublic]:
    configs = storage_configs.list_storage_configs(workspace_id=workspace_id, db=container.db)
    return [public(c) for c in configs]


@router.get("/{name}", response_model=StorageConfigPublic)
def get_storage_config(
    name: str, workspace_id: WorkspaceDep, container: ContainerDep
) -> StorageConfigPublic:
    return public(
        storage_configs.get_storage_config(name, workspace_id=workspace_id, db=container.db)
    )


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_storage_config(
    name: str, workspace_id: WorkspaceDep, container: ContainerDep
) -> Response:
    storage_configs.delete_storage_config(name, workspace_id=workspace_id, db=container.db)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
