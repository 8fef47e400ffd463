"""`storage-configs` and `cloud/{config}/files`: authorized storage, and what it holds."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from importer.errors import Invalid, TimedOut
from importer.rules import key_problem
from metadata.models import StorageConfig
from services import storage_configs
from services.storage_config_requests import (
    AZURE_ENDPOINTS,
    AzureConfigCreate,
    LocalConfigCreate,
    OssConfigCreate,
    S3ConfigCreate,
)
from storage_adapters.errors import StorageError
from tensorbay_api.deps import ContainerDep, PageDep, WorkspaceDep
from tensorbay_api.errors import TensorBayError, invalid
from tensorbay_api.files import FileUrls

router = APIRouter()


class _ConfigBody(BaseModel):
    """What `create_*_storage_config` sends (a superset: each provider uses some)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str
    file_path: str = Field(default="", alias="filePath")
    endpoint: str | None = None
    accesskey_id: str | None = Field(default=None, alias="accesskeyId")
    accesskey_secret: SecretStr | None = Field(default=None, alias="accesskeySecret")
    bucket_name: str | None = Field(default=None, alias="bucketName")
    container_name: str | None = Field(default=None, alias="containerName")
    account_type: str | None = Field(default=None, alias="accountType")


_REQUIRED = {
    "oss": ("endpoint", "accesskeyId", "accesskeySecret", "bucketName"),
    "s3": ("endpoint", "accesskeyId", "accesskeySecret", "bucketName"),
    "azure": ("accesskeyId", "accesskeySecret", "containerName"),
    "local": (),
}
# Bayport's field names back to the SDK's, for error messages.
_SDK_FIELD = {
    "file_path": "filePath",
    "bucket_name": "bucketName",
    "accesskey_id": "accesskeyId",
    "accesskey_secret": "accesskeySecret",
    "account_name": "accesskeyId",
    "account_key": "accesskeySecret",
    "container_name": "containerName",
    "account_type": "accountType",
}


def _bayport_body(provider: str, body: _ConfigBody, container: Any) -> Any:
    secret = body.accesskey_secret.get_secret_value() if body.accesskey_secret else ""
    common: dict[str, Any] = {"name": body.name, "file_path": body.file_path}
    if provider in ("oss", "s3"):
        cls = OssConfigCreate if provider == "oss" else S3ConfigCreate
        return cls(
            **common,
            provider=provider,
            endpoint=body.endpoint,
            bucket_name=body.bucket_name,
            accesskey_id=body.accesskey_id,
            accesskey_secret=secret,
        )
    if provider == "azure":
        account_type = body.account_type or "Global"
        if account_type not in AZURE_ENDPOINTS:
            raise invalid(f"accountType must be one of {sorted(AZURE_ENDPOINTS)}")
        account = body.accesskey_id or ""
        return AzureConfigCreate(
            **common,
            provider="azure",
            account_type=account_type,
            account_name=account,
            account_key=secret,
            container_name=body.container_name,
            endpoint=container.settings.azure_account_urls.get(account),
        )
    # TensorBay's local storage is a service at `endpoint`; Bayport's is a folder the
    # workers read: filePath names it (inside the workspace's own <root>/<workspace id>/ of
    # the operator's BAYPORT_LOCAL_ROOTS).
    return LocalConfigCreate(name=body.name, provider="local", bucket_name=body.file_path)


@router.post("/storage-configs/{provider}")
def create_storage_config(
    provider: str,
    body: Annotated[_ConfigBody, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    if provider not in _REQUIRED:
        raise invalid(f"unknown storage provider {provider!r}: one of oss, s3, azure, local")
    sent = body.model_dump(by_alias=True)
    missing = [f for f in _REQUIRED[provider] if not sent.get(f)]
    if missing:
        raise TensorBayError(400, f"missing: {', '.join(missing)}", code="RequestParamsMissing")
    try:
        bayport_body = _bayport_body(provider, body, container)
    except ValidationError as exc:
        names = _sdk_fields(provider)
        problems = "; ".join(
            f"{names.get(str(e['loc'][-1]), e['loc'][-1])}: {e['msg']}" for e in exc.errors()
        )
        raise invalid(problems) from exc
    try:
        config = storage_configs.create_storage_config(
            bayport_body,
            workspace_id=workspace_id,
            db=container.db,
            box=container.box,
            endpoints=container.endpoints,
            settings=container.settings,
        )
    except (Invalid, TimedOut) as exc:
        raise _field_refusal(exc, _sdk_fields(provider)) from exc
    return {"name": config.name}


def _sdk_fields(provider: str) -> dict[str, str]:
    # A local config's folder is Bayport's bucket_name, sent by the SDK as filePath.
    return {**_SDK_FIELD, "bucket_name": "filePath"} if provider == "local" else _SDK_FIELD


def _field_refusal(exc: Invalid | TimedOut, names: dict[str, str]) -> TensorBayError:
    """The service's refusal of a field in TensorBay's words (the field named as the SDK
    names it), with the main API's status: 422, or 504 for a check that timed out."""
    field = exc.field or "endpoint"
    status = 504 if isinstance(exc, TimedOut) else 422
    return TensorBayError(status, f"{names.get(field, field)}: {exc.message}")


def _public(config: StorageConfig) -> dict[str, Any]:
    return {
        "name": config.name,
        "type": config.provider,
        "filePath": config.file_path,
        "isGravitiStorage": False,
        "accountType": config.account_type,
        "bucketName": config.bucket_name,
        "endpoint": config.endpoint,
        "accesskeyId": config.credentials_hint,  # masked: the secret never comes back
    }


@router.get("/storage-configs")
def list_storage_configs(
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    name: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    offset, limit = page
    configs = storage_configs.list_storage_configs(workspace_id=workspace_id, db=container.db)
    if name is not None:  # exact: the SDK takes the first config it gets
        configs = [c for c in configs if c.name == name]
    return {
        "configs": [_public(c) for c in configs[offset : offset + limit]],
        "offset": offset,
        "recordSize": len(configs[offset : offset + limit]),
        "totalCount": len(configs),
    }


@router.delete("/storage-configs/{name}")
def delete_storage_config(
    name: str, workspace_id: WorkspaceDep, container: ContainerDep
) -> dict[str, Any]:
    storage_configs.delete_storage_config(name, workspace_id=workspace_id, db=container.db)
    return {}


def _config(container: ContainerDep, workspace_id: str, name: str) -> StorageConfig:
    return storage_configs.get_storage_config(name, workspace_id=workspace_id, db=container.db)


@router.get("/cloud/{config_name}/files")
def list_cloud_files(
    config_name: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    prefix: Annotated[str, Query()] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 128,
    marker: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """One page of the files below `prefix`, a path in the config's bucket (every level:
    the seed's `list_auth_data("data/images/")` lists `data/images/...` whatever the config's
    filePath, which is where its datasets live), resumed at `marker`: the page's
    `nextMarker` while `truncated`. The paths returned are bucket keys, as `cloudPath`s
    are."""
    config = _config(container, workspace_id, config_name)
    prefix = _bucket_path(prefix, field="prefix", folder=True)
    try:
        store = container.ctx.stores.for_config(config, at_bucket_root=True)
        page = container.ctx.retry.call(
            lambda: store.list_page(prefix, cursor=marker or None, limit=limit)
        )
    except StorageError as exc:
        raise TensorBayError(
            502, f"listing {config_name!r} failed: {exc}", code="InternalServerError"
        ) from exc
    files = [o.key for o in page.objects if not o.key.endswith("/")]
    body: dict[str, Any] = {"cloudFiles": files, "truncated": page.cursor is not None}
    if page.cursor is not None:
        body["nextMarker"] = page.cursor
    return body


@router.get("/cloud/{config_name}/files/urls")
def cloud_file_url(
    config_name: str,
    request: Request,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    file_path: Annotated[str, Query(alias="filePath", min_length=1)],
) -> dict[str, Any]:
    """A URL to GET the file with (`filePath` a bucket key, as listed), signed by the
    provider (or by Bayport for a folder)."""
    config = _config(container, workspace_id, config_name)
    key = _bucket_path(file_path, field="filePath", folder=False)
    return {"url": FileUrls(request, container, config, at_bucket_root=True).url(key)}


def _bucket_path(value: str, *, field: str, folder: bool) -> str:
    """A path in the bucket as the SDK sends it (a leading '/' dropped). One that would
    leave the bucket ('..', an absolute path after all) or break a key is refused, naming
    it: no such object can exist in the config's bucket."""
    path = value.lstrip("/")
    problem = key_problem(path)
    if problem is None and not folder and (not path or path.endswith("/")):
        problem = "is a folder, not a file"
    if problem is not None:
        raise invalid(f"{field} {value!r} {problem}: no object of the bucket has that path")
    return path
