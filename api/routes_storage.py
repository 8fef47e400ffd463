"""/v1/storage-configs: authorized storage configs. Secrets go in sealed and never come out."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Response, status
from sqlalchemy.exc import IntegrityError

from api.deps import ContainerDep, WorkspaceDep
from api.schemas import StorageConfigCreate, StorageConfigPublic
from bayport.secretbox import mask
from metadata import repository as repo
from metadata.models import StorageConfig

router = APIRouter(prefix="/v1/storage-configs", tags=["storage configs"])


def public(config: StorageConfig) -> StorageConfigPublic:
    return StorageConfigPublic(
        name=config.name,
        provider=config.provider,
        file_path=config.file_path,
        endpoint=config.endpoint,
        region=config.region,
        bucket_name=config.bucket_name,
        accesskey_id=config.credentials_hint,
        created_at=config.created_at,
    )


def _check_local_folder(container: ContainerDep, folder: str) -> None:
    path = Path(folder)
    roots = [r.resolve() for r in container.settings.local_roots]
    if not path.is_absolute() or not any(path.resolve().is_relative_to(r) for r in roots):
        raise HTTPException(
            422,
            [
                {
                    "loc": ["body", "bucket_name"],
                    "type": "value_error",
                    "msg": "a local storage folder must be an absolute path inside one of the "
                    "operator's BAYPORT_LOCAL_ROOTS",
                }
            ],
        )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=StorageConfigPublic)
def create_storage_config(
    body: StorageConfigCreate, workspace_id: WorkspaceDep, container: ContainerDep
) -> StorageConfigPublic:
    if body.provider == "local":
        _check_local_folder(container, body.bucket_name)
    elif not body.accesskey_id or not body.accesskey_secret.get_secret_value():
        raise HTTPException(
            422,
            [
                {
                    "loc": ["body", "accesskey_secret" if body.accesskey_id else "accesskey_id"],
                    "type": "missing",
                    "msg": "an s3 storage config needs accesskey_id and accesskey_secret",
                }
            ],
        )
    credentials = {
        "accesskey_id": body.accesskey_id,
        "accesskey_secret": body.accesskey_secret.get_secret_value(),
    }
    config = StorageConfig(
        workspace_id=workspace_id,
        name=body.name,
        provider=body.provider,
        file_path=body.file_path,
        endpoint=body.endpoint,
        region=body.region,
        bucket_name=body.bucket_name,
        credentials_encrypted=container.box.seal(credentials),
        credentials_hint=mask(body.accesskey_id),
    )
    with container.db.uow() as uow:
        if repo.get_config(uow.session, workspace_id=workspace_id, name=body.name):
            raise HTTPException(409, f"storage config {body.name!r} already exists")
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
