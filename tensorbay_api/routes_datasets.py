"""`datasets`: create, list and read a dataset; its notes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field

from importer.manifest import NAME_PATTERN
from services import datasets
from tensorbay_api.deps import ContainerDep, PageDep, WorkspaceDep
from tensorbay_api.errors import invalid
from tensorbay_api.versions import (
    MAIN,
    ROOT_COMMIT_ID,
    VersionDep,
    find_dataset,
    find_draft,
    paged,
    read_dataset_at,
    seconds,
)

router = APIRouter()


class DatasetBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(pattern=NAME_PATTERN)
    type: int = 0
    alias: str = ""
    is_public: bool = Field(default=False, alias="isPublic")
    config_name: str | None = Field(default=None, alias="configName")


def _dataset_public(view: datasets.DatasetView) -> dict[str, Any]:
    dataset = view.dataset
    return {
        "id": dataset.id,
        "name": dataset.name,
        "type": 0,
        "alias": "",
        "isPublic": False,
        "defaultBranch": MAIN,
        "commitId": dataset.head_commit_id or ROOT_COMMIT_ID,
        "configName": view.config_name,
        "createdAt": seconds(dataset.created_at),
    }


@router.post("/datasets")
def create_dataset(
    body: Annotated[DatasetBody, Body()], workspace_id: WorkspaceDep, container: ContainerDep
) -> dict[str, Any]:
    """A dataset on `configName`'s storage (the SDK's authorized storage): it lives at the
    config's filePath, where its drafts' objects are copied (or registered in place when
    they lie there already). Without `configName`, the dataset lives in Bayport's
    storage."""
    if body.type != 0:
        raise invalid("fusion datasets (type 1) are not supported: only type 0")
    dataset = datasets.create_dataset(
        workspace_id=workspace_id, db=container.db, name=body.name, config_name=body.config_name
    )
    return {"id": dataset.id}


@router.get("/datasets")
def list_datasets(
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    name: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    offset, limit = page
    found = datasets.list_datasets(
        workspace_id=workspace_id, db=container.db, name=name, offset=offset, limit=limit
    )
    items = [_dataset_public(view) for view in found.datasets]
    return paged("datasets", items, found.total, offset)


@router.get("/datasets/{dataset_id}")
def get_dataset(
    dataset_id: str, workspace_id: WorkspaceDep, container: ContainerDep
) -> dict[str, Any]:
    view = datasets.get_dataset(workspace_id=workspace_id, db=container.db, dataset_id=dataset_id)
    return _dataset_public(view)


class NotesBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    draft_number: int = Field(alias="draftNumber", ge=1)
    is_continuous: bool | None = Field(default=None, alias="isContinuous")
    bin_point_cloud_fields: list[str] | None = Field(default=None, alias="binPointCloudFields")


@router.patch("/datasets/{dataset_id}/notes")
def update_notes(
    dataset_id: str,
    body: Annotated[NotesBody, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    with container.db.uow() as uow:
        s = uow.session
        dataset = find_dataset(s, workspace_id, dataset_id)
        find_draft(s, dataset, body.draft_number)
        notes = dict(dataset.notes or {})
        if body.is_continuous is not None:
            notes["isContinuous"] = body.is_continuous
        if "bin_point_cloud_fields" in body.model_fields_set:
            notes["binPointCloudFields"] = body.bin_point_cloud_fields
        dataset.notes = notes
        s.add(dataset)
        uow.commit()
    return {}


@router.get("/datasets/{dataset_id}/notes")
def get_notes(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    version: VersionDep,
) -> dict[str, Any]:
    dataset = read_dataset_at(container.db, workspace_id, dataset_id, version)
    return {"isContinuous": False, "binPointCloudFields": None, **(dataset.notes or {})}
