"""`datasets/{id}/labels`: the catalog labels are checked against, and the label statistics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import select

from labels.catalog import Catalog
from metadata.models import Segment
from metadata.queries import labels as labels_q
from services import datasets
from tensorbay_api.deps import ContainerDep, WorkspaceDep
from tensorbay_api.errors import invalid
from tensorbay_api.versions import VersionDep, read_dataset_at

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
    datasets.set_catalog(
        catalog,
        workspace_id=workspace_id,
        db=container.db,
        dataset_id=dataset_id,
        draft_number=body.draft_number,
    )
    return {}


@router.get("/datasets/{dataset_id}/labels/catalogs")
def get_catalog(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    version: VersionDep,
) -> dict[str, Any]:
    read_dataset_at(container.db, workspace_id, dataset_id, version)  # refuses an old commit
    catalog = datasets.get_catalog(
        workspace_id=workspace_id, db=container.db, dataset_id=dataset_id
    )
    return {"catalog": catalog}


@router.get("/datasets/{dataset_id}/labels/statistics")
def label_statistics(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    version: VersionDep,
) -> dict[str, Any]:
    """Annotations per type and category over the dataset's data, as TensorBay counts them."""
    dataset = read_dataset_at(container.db, workspace_id, dataset_id, version)
    with container.db.uow() as uow:
        s = uow.session
        ids = list(s.exec(select(Segment.id).where(Segment.dataset_id == dataset.id)).all())
        rows = labels_q.label_statistics(s, segment_ids=ids)
    stats: dict[str, Any] = {}
    for label_type, category, count in rows:
        entry = stats.setdefault(label_type, {"quantity": 0, "categories": []})
        entry["quantity"] += count
        if category is not None:
            entry["categories"].append({"name": category, "quantity": count})
    return {"labelStatistics": stats}
