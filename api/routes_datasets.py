"""/v1/datasets: datasets, their segments, and the data the ledger says they hold."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, status
from pydantic import ValidationError
from sqlmodel import Session, select

from api.deps import ContainerDep, PageDep, WorkspaceDep
from api.schemas import DataItem, DatasetCreate, DatasetPublic, Page
from importer.service import ledger_row_public
from labels.catalog import Catalog
from metadata.models import Dataset, Segment
from metadata.queries import datasets as datasets_q
from metadata.queries import labels as labels_q
from services import datasets, lookup

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def _public(view: datasets.DatasetView) -> DatasetPublic:
    return DatasetPublic(
        name=view.dataset.name,
        config_name=view.config_name,
        path=view.dataset.path,
        segments=view.segments,
        created_at=view.dataset.created_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetPublic)
def create_dataset(
    body: DatasetCreate, workspace_id: WorkspaceDep, container: ContainerDep
) -> DatasetPublic:
    dataset = datasets.create_dataset(
        workspace_id=workspace_id,
        db=container.db,
        name=body.name,
        config_name=body.config_name,
        path=body.path,
    )
    return _public(
        datasets.get_dataset(workspace_id=workspace_id, db=container.db, name=dataset.name)
    )


@router.get("", response_model=list[DatasetPublic])
def list_datasets(workspace_id: WorkspaceDep, container: ContainerDep) -> list[DatasetPublic]:
    page = datasets.list_datasets(workspace_id=workspace_id, db=container.db)
    return [_public(view) for view in page.datasets]


@router.get("/{name}", response_model=DatasetPublic)
def get_dataset(name: str, workspace_id: WorkspaceDep, container: ContainerDep) -> DatasetPublic:
    return _public(datasets.get_dataset(workspace_id=workspace_id, db=container.db, name=name))


def _dataset(s: Session, workspace_id: str, name: str) -> Dataset:
    return lookup.dataset_named(s, workspace_id=workspace_id, name=name)


@router.put("/{name}/catalog", response_model=dict[str, Any])
def put_catalog(
    name: str,
    body: Annotated[dict[str, Any], Body(description="TensorBay catalog: {TYPE: {...}}")],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    """Set the dataset's catalog; later imports check every label against it. The answer is
    the catalog as stored: TensorBay's catalog JSON without null members, as TensorBay's
    API reads it back too."""
    try:
        catalog = Catalog.model_validate(body)
    except ValidationError as exc:
        raise HTTPException(
            422,
            [
                {"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
                for err in exc.errors(include_url=False, include_input=False)
            ],
        ) from exc
    return datasets.set_catalog(catalog, workspace_id=workspace_id, db=container.db, name=name)


@router.get("/{name}/catalog", response_model=dict[str, Any])
def get_catalog(name: str, workspace_id: WorkspaceDep, container: ContainerDep) -> dict[str, Any]:
    return datasets.get_catalog(workspace_id=workspace_id, db=container.db, name=name)


@router.get("/{name}/label-statistics", response_model=dict[str, Any])
def label_statistics(
    name: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    segment: Annotated[str | None, Query(description="Only this segment")] = None,
) -> dict[str, Any]:
    """Annotations per type and category over the objects present, as TensorBay's
    `labels/statistics`: {"labels": {TYPE: {"quantity", "categories": [{name, quantity}]}}}."""
    with container.db.uow() as uow:
        s = uow.session
        dataset = _dataset(s, workspace_id, name)
        segments = s.exec(select(Segment).where(Segment.dataset_id == dataset.id)).all()
        ids = [g.id for g in segments if segment is None or g.name == segment]
        if segment is not None and not ids:
            raise HTTPException(404, f"segment {segment!r} of dataset {name!r} does not exist")
        rows = labels_q.label_statistics(s, segment_ids=ids)
    labels: dict[str, Any] = {}
    for label_type, category, count in rows:
        entry = labels.setdefault(label_type, {"quantity": 0, "categories": []})
        entry["quantity"] += count
        if category is not None:
            entry["categories"].append({"name": category, "quantity": count})
    return {"labels": labels}


@router.get("/{name}/segments/{segment}/data", response_model=Page[DataItem])
def segment_data(
    name: str,
    segment: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    category: Annotated[str | None, Query(description="Only data with this category")] = None,
    label_type: Annotated[str | None, Query(description="Only data with this type")] = None,
) -> Page[DataItem]:
    offset, limit = page
    with container.db.uow() as uow:
        s = uow.session
        dataset = _dataset(s, workspace_id, name)
        seg = datasets_q.get_segment(s, dataset_id=dataset.id, name=segment)
        if seg is None:
            raise HTTPException(404, f"segment {segment!r} of dataset {name!r} does not exist")
        rows = datasets_q.segment_data(
            s,
            segment_id=seg.id,
            offset=offset,
            limit=limit + 1,
            category=category,
            label_type=label_type.upper() if label_type else None,
        )
    items = [DataItem(**ledger_row_public(r)) for r in rows[:limit]]
    return Page[DataItem](
        items=items,
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(rows) > limit else None,
    )
