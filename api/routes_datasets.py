"""/v1/datasets: datasets, their segments, and the data the ledger says they hold."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from api.deps import ContainerDep, PageDep, WorkspaceDep
from api.schemas import DataItem, DatasetCreate, DatasetPublic, Page
from importer.service import ledger_row_public
from metadata import repository as repo
from metadata.models import Dataset, Segment, StorageConfig, new_id

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
    with container.db.uow() as uow:
        s = uow.session
        if repo.get_dataset(s, workspace_id=workspace_id, name=body.name):
            raise HTTPException(409, f"dataset {body.name!r} already exists")
        dataset_id = new_id()
        if body.config_name is not None:
            config = repo.get_config(s, workspace_id=workspace_id, name=body.config_name)
            if config is None:
                raise HTTPException(404, f"storage config {body.config_name!r} does not exist")
            config_id, path = config.id, body.path or ""
        else:
            # Bayport's own storage: each dataset gets a folder of its own.
            config_id, path = None, f"{workspace_id}/{dataset_id}/{body.path or ''}"
        dataset = Dataset(
            id=dataset_id,
            workspace_id=workspace_id,
            name=body.name,
            config_id=config_id,
            path=path,
        )
        s.add(dataset)
        try:
            uow.commit()
        except IntegrityError as exc:
            raise HTTPException(409, f"dataset {body.name!r} already exists") from exc
        return _public(s, dataset)


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


@router.get("/{name}/segments/{segment}/data", response_model=Page[DataItem])
def segment_data(
    name: str, segment: str, workspace_id: WorkspaceDep, container: ContainerDep, page: PageDep
) -> Page[DataItem]:
    offset, limit = page
    with container.db.uow() as uow:
        s = uow.session
        dataset = repo.get_dataset(s, workspace_id=workspace_id, name=name)
        if dataset is None:
            raise HTTPException(404, f"dataset {name!r} does not exist")
        seg = repo.get_segment(s, dataset_id=dataset.id, name=segment)
        if seg is None:
            raise HTTPException(404, f"segment {segment!r} of dataset {name!r} does not exist")
        rows = repo.segment_data(s, segment_id=seg.id, offset=offset, limit=limit + 1)
    items = [DataItem(**ledger_row_public(r)) for r in rows[:limit]]
    return Page[DataItem](
        items=items,
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(rows) > limit else None,
    )
