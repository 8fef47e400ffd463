"""/v1/imports: submit a manifest (202 + job id), follow (JSON or server-sent events), cancel
and retry import jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ContainerDep, PageDep, WorkspaceDep, current_workspace
from api.schemas import (
    FailureItem,
    JobCounts,
    JobProgress,
    JobPublic,
    NoteItem,
    Page,
    ThroughputPoint,
    UnpairedItem,
)
from edge.bulkhead import stream_slot
from importer import jobs as import_jobs
from importer import progress, service
from importer.errors import Invalid
from importer.manifest import ImportManifest
from importer.planner import DELETE_CANDIDATE, REJECTED_ROW, UNIMPORTED_KEY
from metadata.models import Dataset, ImportJob, JobState, Segment
from metadata.queries import job_reports, ledger
from metadata.queries import jobs as jobs_q
from metadata.queries import notes as notes_q

router = APIRouter(prefix="/v1/imports", tags=["imports"])


def progress_public(p: progress.Progress) -> JobProgress:
    return JobProgress(
        state=p.state,
        run=p.run,
        listing_done=p.listing_done,
        objects_listed=p.objects_listed,
        objects_total=p.objects_total,
        objects_done=p.objects_done,
        bytes_listed=p.bytes_listed,
        bytes_total=p.bytes_total,
        bytes_done=p.bytes_done,
        failed=p.failed,
        percent=p.percent,
        objects_per_second=p.objects_per_second,
        mb_per_second=round(p.bytes_per_second / 1e6, 3),
        eta_seconds=p.eta_seconds,
        rate_window_seconds=p.rate_window_seconds,
        bucket_seconds=p.bucket_seconds,
        throughput=[
            ThroughputPoint(
                at=datetime.fromtimestamp(b.start, UTC),
                objects=b.objects,
                bytes=b.bytes,
                failed=b.failed,
            )
            for b in p.series
        ],
        as_of=datetime.fromtimestamp(p.as_of, UTC),
    )


def job_public(container: ContainerDep, job: ImportJob, *, with_progress: bool = True) -> JobPublic:
    counts = service.job_progress(container.ctx, job)
    measured = (
        progress_public(progress.measure(container.ctx, job, counts)) if with_progress else None
    )
    with container.db.uow() as uow:
        dataset = uow.session.get(Dataset, job.dataset_id)
        segment = uow.session.get(Segment, job.segment_id)
        rejected = (
            notes_q.count_notes(uow.session, job_id=job.id, kind=REJECTED_ROW)
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
            left_out=job.left_out or {},
        ),
        shards_total=job.shards_total,
        listing_done=job.listing_done,
        cancel_requested=job.cancel_requested,
        error=job.error,
        review_reason=job.review_reason,
        notice=job.notice,
        schedule_id=job.schedule_id,
        manifest=job.manifest,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=measured,
    )


def _job(container: ContainerDep, workspace_id: str, job_id: str) -> ImportJob:
    with container.db.uow() as uow:
        job = jobs_q.get_job(uow.session, workspace_id=workspace_id, job_id=job_id)
    if job is None:
        raise HTTPException(404, f"import job {job_id!r} does not exist")
    return job


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description="Any 1 to 255 printable ASCII characters, new for each import: a "
        "request repeated with the key (a retry after a timeout) gets the job the first "
        "one made, with `Idempotent-Replayed: true`, instead of a second job; the key "
        "with a different manifest is refused (422)",
    ),
]


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
def submit_import(
    manifest: ImportManifest,
    response: Response,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    if manifest.source.draft is not None:
        raise Invalid(
            "source.draft is set by the TensorBay API when it gathers a draft's registered "
            "objects, not by a submitted manifest",
            field="source.draft",
        )
    submitted = import_jobs.submit(
        container.ctx,
        workspace_id=workspace_id,
        manifest=manifest,
        idempotency_key=idempotency_key,
    )
    job = submitted.job
    response.headers["Location"] = f"/v1/imports/{job.id}"
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return job_public(container, job)


@router.get("", response_model=Page[JobPublic])
def list_imports(
    workspace_id: WorkspaceDep, container: ContainerDep, page: PageDep
) -> Page[JobPublic]:
    offset, limit = page
    with container.db.uow() as uow:
        jobs = jobs_q.list_jobs(
            uow.session, workspace_id=workspace_id, offset=offset, limit=limit + 1
        )
    return Page[JobPublic](
        items=[job_public(container, j, with_progress=False) for j in jobs[:limit]],
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(jobs) > limit else None,
    )


@router.get("/{job_id}", response_model=JobPublic)
def get_import(job_id: str, workspace_id: WorkspaceDep, container: ContainerDep) -> JobPublic:
    return job_public(container, _job(container, workspace_id, job_id))


def _job_progress(container: ContainerDep, job_id: str) -> JobProgress | None:
    with container.db.uow() as uow:
        job = uow.session.get(ImportJob, job_id)
    if job is None:
        return None
    return progress_public(
        progress.measure(container.ctx, job, service.job_progress(container.ctx, job))
    )


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Progress events"},
        429: {"description": "The workspace has BAYPORT_API_EVENT_STREAMS streams open"},
    },
    # edge/bulkhead.py: at most so many open per workspace
    dependencies=[stream_slot(current_workspace)],
)
async def import_events(
    job_id: str,
    request: Request,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    interval: Annotated[float, Query(ge=0.2, le=30, description="Seconds between events")] = 1.0,
) -> StreamingResponse:
    """Server-sent events: a `progress` event (the `progress` object of GET
    /v1/imports/{id}, state included) every `interval` seconds — so within that time of a
    change — until the job's final state, which is the last event."""
    await run_in_threadpool(_job, container, workspace_id, job_id)

    async def events() -> AsyncIterator[str]:
        seq = 0
        while True:
            began = time.monotonic()
            current = await run_in_threadpool(_job_progress, container, job_id)
            if current is None:  # deleted under us
                return
            seq += 1
            yield f"id: {seq}\nevent: progress\ndata: {current.model_dump_json()}\n\n"
            if JobState(current.state).is_final or await request.is_disconnected():
                return
            # A job of millions of objects takes a while to count: wait at least as long
            # as counting took, so a watcher keeps the DB busy half the time at most.
            await asyncio.sleep(max(interval, time.monotonic() - began))

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        # No caching, and no buffering by a reverse proxy (nginx) that would hold events back.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


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
        rows = job_reports.job_failures(uow.session, job_id=job.id, offset=offset, limit=limit + 1)
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
            notes = notes_q.job_notes(
                uow.session, job_id=job.id, kind=kind, offset=offset, limit=limit + 1
            )
            keys = [n.key for n in notes]
        else:
            entries = ledger.unlabelled_entries(
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


@router.get("/{job_id}/unimported", response_model=Page[NoteItem])
def import_unimported(
    job_id: str, workspace_id: WorkspaceDep, container: ContainerDep, page: PageDep
) -> Page[NoteItem]:
    """Listed keys the job did not import as objects of their own, each with why: keys
    ending in '/' that hold data, and objects that share one label file with another."""
    return _notes(container, workspace_id, job_id, UNIMPORTED_KEY, page)


def _notes(
    container: ContainerDep, workspace_id: str, job_id: str, kind: str, page: tuple[int, int]
) -> Page[NoteItem]:
    offset, limit = page
    job = _job(container, workspace_id, job_id)
    with container.db.uow() as uow:
        notes = notes_q.job_notes(
            uow.session, job_id=job.id, kind=kind, offset=offset, limit=limit + 1
        )
        keys = [n.key for n in notes]
    return Page[NoteItem](
        items=[NoteItem(key=k) for k in keys[:limit]],
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(keys) > limit else None,
    )
