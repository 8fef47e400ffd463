"""`datasets/{id}/multi/cloud-callback`: register files of the dataset's storage config into
a draft's segment."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from importer import drafts
from importer.manifest import SEGMENT_PATTERN
from importer.rules import key_problem
from metadata.queries import datasets as datasets_q
from tensorbay_api.deps import ContainerDep, WorkspaceDep
from tensorbay_api.errors import invalid, not_found
from tensorbay_api.versions import find_dataset, find_draft

router = APIRouter()

MAX_OBJECTS_PER_CALL = 1000


class CloudObject(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    cloud_path: str = Field(alias="cloudPath", min_length=1, max_length=4096)
    remote_path: str = Field(alias="remotePath", min_length=1, max_length=4096)
    label: dict[str, Any] | None = None


class CloudCallbackBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    segment_name: str = Field(alias="segmentName", pattern=SEGMENT_PATTERN)
    objects: list[CloudObject] = Field(min_length=1, max_length=MAX_OBJECTS_PER_CALL)
    delete_source: bool = Field(default=False, alias="deleteSource")
    draft_number: int = Field(alias="draftNumber", ge=1)


@router.put("/datasets/{dataset_id}/multi/cloud-callback")
def cloud_callback(
    dataset_id: str,
    body: Annotated[CloudCallbackBody, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    """Register files of the dataset's storage config into a draft's segment: each
    `cloudPath` a key of the config's bucket (as `list_auth_data` lists it), copied into
    the dataset's storage path unless it lies there already. The call only stores them:
    a worker gathers the segment's waiting objects into one import job
    (importer/drafts.py). A bad object or label fails that object alone, in its job."""
    if body.delete_source:
        raise invalid("deleteSource: Bayport never deletes the files a client registers")
    objects: list[tuple[str, str, dict[str, Any] | None]] = []
    seen: dict[str, int] = {}
    for i, obj in enumerate(body.objects):
        if obj.remote_path in seen:
            raise invalid(
                f"objects[{i}].remotePath {obj.remote_path!r} is also objects"
                f"[{seen[obj.remote_path]}]'s: each name once per call"
            )
        seen[obj.remote_path] = i
        cloud_path = obj.cloud_path.lstrip("/")
        for field, value in (("cloudPath", cloud_path), ("remotePath", obj.remote_path)):
            problem = key_problem(value) or ("is a folder" if value.endswith("/") else None)
            if problem is not None:
                raise invalid(f"objects[{i}].{field} {value!r}: {problem}")
        objects.append((cloud_path, obj.remote_path, obj.label or None))
    with container.db.uow() as uow:  # one transaction: the call stays short
        s = uow.session
        dataset = find_dataset(s, workspace_id, dataset_id)
        if dataset.config_id is None:
            raise invalid(
                f"dataset {dataset.name!r} has no storage config (created without "
                "configName): cloud files can only be registered into a dataset on the "
                "config that holds them"
            )
        draft = find_draft(s, dataset, body.draft_number, share=True)
        if datasets_q.get_segment(s, dataset_id=dataset.id, name=body.segment_name) is None:
            raise not_found(f"segment {body.segment_name!r} of dataset {dataset.name!r}")
        drafts.register(s, draft, segment_name=body.segment_name, objects=objects)
        uow.commit()
    drafts.request_gathering(
        container.ctx,
        dataset_id=dataset_id,
        draft_number=body.draft_number,
        segment_name=body.segment_name,
    )
    return {}
