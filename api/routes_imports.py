"""/v1/imports: submit a manifest (202 + job id), follow, cancel and retry import jobs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status

from api.deps import ContainerDep, PageDep, WorkspaceDep
from api.schemas import FailureItem, JobCounts, JobPublic, NoteItem, Page, UnpairedItem
from importer import service
from importer.manifest import ImportManifest
from importer.planner import DELETE_CANDIDATE, REJECTED_ROW
from metadata import repository as repo
from metadata.models import Dataset, ImportJob, Segment

router = APIRouter(prefix="/v1/imports", tags=["imports"])


def job_public(container: ContainerDep, job: ImportJob) -> JobPublic:
    counts = service.job_progress(container.ctx, job)
    with container.db.uow() as uow:
        dataset = uow.session.get(Dataset, job.dataset_id)
        segment = uow.session.get(Segment, job.segment_id)
        rejected = (
            repo.count_notes(uow.session, job_id=job.id, kind=REJECTED_ROW)
            if job.manifest.get("source", {}).get("object_list")
            else 0
        )
    return JobPublic(
        id=job.id,
        state=job.state,
        dataset=dataset.name if dataset else "",
        segment=segment.name if segment else "",
        in_place=job.in_place,
        run=job.run,
        counts=JobCounts(
            listed=job.listed,
            planned=job.planned,
            copied=counts.copied,
            registered=counts.registered,
            skipped=counts.skipped,
            failed=counts.failed,
            unlabelled=job.unlabelled,
            labels_without_object=job.labels_without_object,
            bytes_listed=job.bytes_listed,
            bytes_copied=counts.bytes_copied,
            unchanged=job.unchanged,
            relabelled=counts.relabelled,
            deleted=counts.deleted,
            relabel_planned=job.relabel_planned,
            delete_planned=job.delete_planned,
            rejected_rows=rejected,
        ),
        shards_total=job.shards_total,
        listing_done=job.listing_done,
        cancel_requested=job.cancel_requested,
        error=job.error,
        review_reason=job.review_reason,
        schedule_id=job.schedule_id,
        manifest=job.manifest,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _job(container: ContainerDep, workspace_id: str, job_id: str) -> ImportJob:
    with container.db.uow() as uow:
        job = repo.get_job(uow.session, workspace_id=workspace_id, job_id=job_id)
    if job is None:
        raise HTTPException(404, f"import job {job_id!r} does not exist")
    return job


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
def submit_import(
    manifest: ImportManifest,
    response: Response,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> JobPublic:
    job = service.submit_import(container.ctx, workspace_id=workspace_id, manifest=manifest)
    response.headers["Location"] = f"/v1/imports/{job.id}"
    return job_public(container, job)


@router.get("", response_model=Page[JobPublic])
def list_imports(
    workspace_id: WorkspaceDep, container: ContainerDep, page: PageDep
) -> Page[JobPublic]:
    offset, limit = page
    with container.db.uow() as uow:
        jobs = repo.list_jobs(
            uow.session, workspace_id=workspace_id, offset=offset, limit=limit + 1
        )
    return Page[JobPublic](
        items=[job_public(container, j) for j in jobs[:limit]],
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(jobs) > limit else None,
    )


@router.get("/{job_id}", response_model=JobPublic)
def get_import(job_id: str, workspace_id: WorkspaceDep, container: ContainerDep) -> JobPublic:
    return job_public(container, _job(container, workspace_id, job_id))


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
def cancel_import(job_id: str, workspace_id: WorkspaceDep, container: ContainerDep) -> JobPublic:
    job = service.cancel_import(container.ctx, workspace_id=workspace_id, job_id=job_id)
    return job_public(container, job)


@router.post("/{job_id}/retry", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
def retry_import(job_id: str, workspace_id: WorkspaceDep, container: ContainerDep) -> JobPublic:
    job = service.retry_import(container.ctx, workspace_id=workspace_id, job_id=job_id)
    return job_public(container, job)


@router.get("/{job_id}/failures", response_model=Page[FailureItem])
def import_failures(
    job_id: str, workspace_id: WorkspaceDep, container: ContainerDep, page: PageDep
) -> Page[FailureItem]:
    offset, limit = page
    job = _job(container, workspace_id, job_id)
    with container.db.uow() as uow:
        rows = repo.job_failures(uow.session, job_id=job.id, offset=offset, limit=limit + 1)
    items = [
        FailureItem(
            source_key=r.source_key,
            remote_path=r.remote_path,
            error_code=r.error_code,
            error_message=r.error_message,
            attempts=r.attempts,
        )
        for r in rows[:limit]
    ]
    return Page[FailureItem](
        items=items,
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(rows) > limit else None,
    )


@router.get("/{job_id}/unpaired", response_model=Page[UnpairedItem])
def import_unpaired(
    job_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    kind: Annotated[
        Literal["label_without_object", "object_without_label"],
        Query(description="Label files no object pairs with, or objects imported unlabelled"),
    ] = "label_without_object",
) -> Page[UnpairedItem]:
    offset, limit = page
    job = _job(container, workspace_id, job_id)
    with container.db.uow() as uow:
        if kind == "label_without_object":
            notes = repo.job_notes(
                uow.session, job_id=job.id, kind=kind, offset=offset, limit=limit + 1
            )
            keys = [n.key for n in notes]
        else:
            entries = repo.unlabelled_entries(
                uow.session, job_id=job.id, offset=offset, limit=limit + 1
            )
            keys = [e.source_key for e in entries]
    return Page[UnpairedItem](
        items=[UnpairedItem(kind=kind, key=k) for k in keys[:limit]],
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(keys) > limit else None,
    )


@router.get("/{job_id}/deletions", response_model=Page[NoteItem])
def import_deletions(
    job_id: str, workspace_id: WorkspaceDep, container: ContainerDep, page: PageDep
) -> Page[NoteItem]:
    """A sync's objects gone from the source (remote paths in the segment): deleted, or —
    when the job ended needs_review or was a dry run — what would have been deleted."""
    return _notes(container, workspace_id, job_id, DELETE_CANDIDATE, page)


@router.get("/{job_id}/rejected", response_model=Page[NoteItem])
def import_rejected(
    job_id: str, workspace_id: WorkspaceDep, container: ContainerDep, page: PageDep
) -> Page[NoteItem]:
    """Object-list rows that were refused, each with its line number and reason."""
    return _notes(container, workspace_id, job_id, REJECTED_ROW, page)


def _notes(
    container: ContainerDep, workspace_id: str, job_id: str, kind: str, page: tuple[int, int]
) -> Page[NoteItem]:
    offset, limit = page
    job = _job(container, workspace_id, job_id)
    with container.db.uow() as uow:
        notes = repo.job_notes(
            uow.session, job_id=job.id, kind=kind, offset=offset, limit=limit + 1
        )
        keys = [n.key for n in notes]
    return Page[NoteItem](
        items=[NoteItem(key=k) for k in keys[:limit]],
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(keys) > limit else None,
    )
