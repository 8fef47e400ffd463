"""`datasets/{id}/labels`: the catalog labels are checked against, and the label statistics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import select

from labels.catalog import Catalog
from metadata import repository as repo
from metadata.models import Segment
from tensorbay_api.deps import ContainerDep, WorkspaceDep
from tensorbay_api.errors import invalid
from tensorbay_api.versions import VersionDep, dataset_at, find_dataset, find_draft

router = APIRouter()


class CatalogBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    catalog: dict[str, Any]
    draft_number: int = Field(alias="draftNumber", ge=1)


@router.put("/datasets/{dataset_id}/labels/catalogs")
def put_catalog(
    dataset_id: str,
    body: Annotated[CatalogBody, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    """The catalog labels are checked against (objects imported after it is set)."""
    try:
        catalog = Catalog.model_validate(body.catalog)
    except ValueError as exc:
        raise invalid(f"catalog: {exc}") from exc
    with container.db.uow() as uow:
        s = uow.session
        dataset = find_dataset(s, workspace_id, dataset_id)
        find_draft(s, dataset, body.draft_number)
        dataset.catalog = catalog.model_dump(mode="json", by_alias=True, exclude_none=True)
        s.add(dataset)
        uow.commit()
    return {}


@router.get("/datasets/{dataset_id}/labels/catalogs")
def get_catalog(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    version: VersionDep,
) -> dict[str, Any]:
    with container.db.uow() as uow:
        s = uow.session
        dataset = dataset_at(s, workspace_id, dataset_id, version)
        return {"catalog": dataset.catalog or {}}


@router.get("/datasets/{dataset_id}/labels/statistics")
def label_statistics(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    version: VersionDep,
) -> dict[str, Any]:
    """Annotations per type and category over the dataset's data, as TensorBay counts them."""
    with container.db.uow() as uow:
        s = uow.session
        dataset = dataset_at(s, workspace_id, dataset_id, version)
        ids = list(s.exec(select(Segment.id).where(Segment.dataset_id == dataset.id)).all())
        rows = repo.label_statistics(s, segment_ids=ids)
    stats: dict[str, Any] = {}
    for label_type, category, count in rows:
        entry = stats.setdefault(label_type, {"quantity": 0, "categories": []})
        entry["quantity"] += count
        if category is not None:
            entry["categories"].append({"name": category, "quantity": count})
    return {"labelStatistics": stats}
