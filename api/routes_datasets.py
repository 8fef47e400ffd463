"""/v1/datasets: datasets, their segments, and the data the ledger says they hold."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, status
from pydantic import ValidationError
from sqlmodel import Session, col, select

from api.deps import ContainerDep, PageDep, WorkspaceDep
from api.schemas import DataItem, DatasetCreate, DatasetPublic, Page
from importer.service import ledger_row_public
from labels.catalog import Catalog
from metadata import repository as repo
from metadata.models import Dataset, Segment, StorageConfig
from services import datasets

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def _public(session: object, dataset: Dataset) -> DatasetPublic:
    from sqlmodel import Session

    assert isinstance(session, Session)
    config = session.get(StorageConfig, dataset.config_id) if dataset.config_id else None
    segments = session.exec(
        select(Segment.name).where(Segment.dataset_id == dataset.id).order_by(col(Segment.name))
    ).all()
    return DatasetPublic(
        name=dataset.name,
        config_name=config.name if config else None,
        path=dataset.path,
        segments=list(segments),
        created_at=dataset.created_at,
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
    with container.db.uow() as uow:
        return _public(uow.session, dataset)


@router.get("", response_model=list[DatasetPublic])
def list_datasets(workspace_id: WorkspaceDep, container: ContainerDep) -> list[DatasetPublic]:
    with container.db.uow() as uow:
        return [
            _public(uow.session, d)
            for d in repo.list_datasets(uow.session, workspace_id=workspace_id)
        ]


@router.get("/{name}", response_model=DatasetPublic)
def get_dataset(name: str, workspace_id: WorkspaceDep, container: ContainerDep) -> DatasetPublic:
    with container.db.uow() as uow:
        dataset = repo.get_dataset(uow.session, workspace_id=workspace_id, name=name)
        if dataset is None:
            raise HTTPException(404, f"dataset {name!r} does not exist")
        return _public(uow.session, dataset)


def _dataset(s: Session, workspace_id: str, name: str) -> Dataset:
    dataset = repo.get_dataset(s, workspace_id=workspace_id, name=name)
    if dataset is None:
        raise HTTPException(404, f"dataset {name!r} does not exist")
    return dataset


@router.put("/{name}/catalog", response_model=dict[str, Any])
def put_catalog(
    name: str,
    body: Annotated[dict[str, Any], Body(description="TensorBay catalog: {TYPE: {...}}")],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    """Set the dataset's catalog; later imports check every label against it."""
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
    with container.db.uow() as uow:
        dataset = _dataset(uow.session, workspace_id, name)
        dataset.catalog = catalog.dumps()
        uow.session.add(dataset)
        uow.commit()
        return dataset.catalog


@router.get("/{name}/catalog", response_model=dict[str, Any])
def get_catalog(name: str, workspace_id: WorkspaceDep, container: ContainerDep) -> dict[str, Any]:
    with container.db.uow() as uow:
        return _dataset(uow.session, workspace_id, name).catalog or {}


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
        rows = repo.label_statistics(s, segment_ids=ids)
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
        seg = repo.get_segment(s, dataset_id=dataset.id, name=segment)
        if seg is None:
            raise HTTPException(404, f"segment {segment!r} of dataset {name!r} does not exist")
        rows = repo.segment_data(
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
