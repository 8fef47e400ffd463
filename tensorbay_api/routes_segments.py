"""`datasets/{id}/segments` and their data: create and list segments, read their data
back (paths, URLs, labels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bootstrap import Container
from importer.manifest import SEGMENT_PATTERN
from metadata.models import LedgerEntry, Segment, StorageConfig
from metadata.queries import datasets as datasets_q
from metadata.queries._common import PRESENT_OUTCOMES
from tensorbay_api.deps import ContainerDep, PageDep, WorkspaceDep
from tensorbay_api.errors import not_found
from tensorbay_api.files import FileUrls
from tensorbay_api.versions import Version, VersionDep, dataset_at, find_dataset, find_draft, paged

router = APIRouter()


@router.get("/datasets/{dataset_id}/segments")
def list_segments(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    version: VersionDep,
) -> dict[str, Any]:
    offset, limit = page
    with container.db.uow() as uow:
        s = uow.session
        dataset = dataset_at(s, workspace_id, dataset_id, version)
        found = s.exec(
            select(Segment).where(Segment.dataset_id == dataset.id).order_by(col(Segment.name))
        ).all()
        items = [
            {"name": g.name, "description": g.description} for g in found[offset : offset + limit]
        ]
    return paged("segments", items, len(found), offset)


class SegmentBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(pattern=SEGMENT_PATTERN)  # '' is the SDK's default segment
    draft_number: int = Field(alias="draftNumber", ge=1)
    description: str = ""


@router.post("/datasets/{dataset_id}/segments")
def create_segment(
    dataset_id: str,
    body: Annotated[SegmentBody, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    for _ in range(2):
        with container.db.uow() as uow:
            s = uow.session
            dataset = find_dataset(s, workspace_id, dataset_id)
            find_draft(s, dataset, body.draft_number)
            segment = datasets_q.get_or_create_segment(s, dataset_id=dataset.id, name=body.name)
            if body.description:
                segment.description = body.description
                s.add(segment)
            try:
                uow.commit()
            except IntegrityError:
                continue  # made at the same time by another call: it is there
            return {}
    return {}


# --- reading data back ------------------------------------------------------------------


def _entries(
    s: Session, segment: Segment, remote_path: str | None, offset: int, limit: int
) -> tuple[list[LedgerEntry], int]:
    if remote_path is not None:
        entry = s.exec(
            select(LedgerEntry).where(
                LedgerEntry.segment_id == segment.id,
                LedgerEntry.remote_path == remote_path,
                col(LedgerEntry.outcome).in_(list(PRESENT_OUTCOMES)),
            )
        ).first()
        return ([entry], 1) if entry is not None else ([], 0)
    rows = list(datasets_q.segment_data(s, segment_id=segment.id, offset=offset, limit=limit))
    return rows, datasets_q.count_segment_data(s, segment_id=segment.id)


@dataclass(frozen=True)
class DataQuery:
    """Which data a read asks for: a segment (one path of it), at a version."""

    segment_name: str
    remote_path: str | None
    version: Version


def data_query(
    segment_name: Annotated[str, Query(alias="segmentName")],
    version: VersionDep,
    remote_path: Annotated[str | None, Query(alias="remotePath")] = None,
) -> DataQuery:
    return DataQuery(segment_name, remote_path, version)


DataQueryDep = Annotated[DataQuery, Depends(data_query)]


def _read_data(
    container: Container, workspace_id: str, dataset_id: str, q: DataQuery, page: tuple[int, int]
) -> tuple[list[LedgerEntry], int, StorageConfig | None]:
    """A page of the segment's present entries, their total, and the dataset's config."""
    with container.db.uow() as uow:
        s = uow.session
        dataset = dataset_at(s, workspace_id, dataset_id, q.version)
        segment = datasets_q.get_segment(s, dataset_id=dataset.id, name=q.segment_name)
        if segment is None:
            raise not_found(f"segment {q.segment_name!r} of dataset {dataset.name!r}")
        rows, total = _entries(s, segment, q.remote_path, *page)
        config = s.get(StorageConfig, dataset.config_id) if dataset.config_id else None
    return rows, total, config


@router.get("/datasets/{dataset_id}/data/details")
def data_details(
    dataset_id: str,
    request: Request,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    q: DataQueryDep,
) -> dict[str, Any]:
    """The segment's data with their labels and a URL each, in path order."""
    rows, total, config = _read_data(container, workspace_id, dataset_id, q, page)
    urls = FileUrls(request, container, config)
    items = [
        {"remotePath": r.remote_path, "url": urls.url(r.dest_key), "label": r.label or {}}
        for r in rows
    ]
    return paged("dataDetails", items, total, page[0])


@router.get("/datasets/{dataset_id}/data/urls")
def data_urls(
    dataset_id: str,
    request: Request,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    q: DataQueryDep,
) -> dict[str, Any]:
    rows, total, config = _read_data(container, workspace_id, dataset_id, q, page)
    urls = FileUrls(request, container, config)
    items = [{"remotePath": r.remote_path, "url": urls.url(r.dest_key)} for r in rows]
    return paged("urls", items, total, page[0])


@router.get("/datasets/{dataset_id}/data")
def data_paths(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    q: DataQueryDep,
) -> dict[str, Any]:
    rows, total, _ = _read_data(container, workspace_id, dataset_id, q, page)
    return paged("data", [{"remotePath": r.remote_path} for r in rows], total, page[0])
