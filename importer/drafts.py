"""Objects a TensorBay client registers into a draft (`multi/cloud-callback`), gathered into
import jobs.

The SDK sends one request per object, eight at a time. Each request only stores its object
(`register`, in the request's one transaction) and, when none is queued yet, queues one
gathering of the draft's segment. The gathering (`gather`, a worker task) makes one import
job of every object waiting in that segment: while a job runs on the segment, newly
registered objects wait, and the next gathering takes them all at once. So a call stays one
short transaction however many come, and jobs grow with the rate objects arrive. The job
imports each object under the name the client gave it, with the label it sent: copied into
the dataset's storage path, or registered where it is when it lies there already.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from importer.context import ImportContext, log
from importer.errors import Conflict, Invalid, NotFound
from importer.jobs import submit
from importer.locations import folder_of
from importer.manifest import ImportManifest, ImportOptions, SourceSpec
from metadata.models import Dataset, Draft, DraftStatus, ImportJob, JobState, StorageConfig
from metadata.queries import drafts

# How long a gathering that found a job running on its segment waits before looking again.
BUSY_RETRY_SECONDS = 1.0


def batch_key(dataset_id: str, draft_number: int, segment_name: str) -> str:
    """The id a gathering task carries: a draft's segment (segment names hold no ':')."""
    return f"{dataset_id}:{draft_number}:{segment_name}"


def _parse_key(key: str) -> tuple[str, int, str]:
    dataset_id, number, segment_name = key.split(":", 2)
    return dataset_id, int(number), segment_name


def register(
    s: Session,
    draft: Draft,
    *,
    segment_name: str,
    objects: list[tuple[str, str, dict[str, Any] | None]],
) -> None:
    """Hold `(cloud_path, remote_path, label)` objects for an open draft's segment, in the
    caller's transaction; after committing it, the caller calls `request_gathering`. The
    caller must have read `draft` FOR SHARE: a commit of the draft locks it for update, so
    nothing is registered into a draft between the commit's last check and the commit."""
    if draft.status != DraftStatus.OPEN.value:
        raise Invalid(f"draft {draft.number} is {draft.status}, not OPEN", field="draftNumber")
    drafts.register_draft_objects(
        s,
        dataset_id=draft.dataset_id,
        draft_number=draft.number,
        segment_name=segment_name,
        objects=objects,
    )


def request_gathering(
    ctx: ImportContext, *, dataset_id: str, draft_number: int, segment_name: str
) -> None:
    """Queue a gathering of the segment unless one is queued (after a registration
    committed: see drafts.flag_draft_batch for why that order loses nothing)."""
    with ctx.db.uow() as uow:
        send = drafts.flag_draft_batch(
            uow.session,
            dataset_id=dataset_id,
            draft_number=draft_number,
            segment_name=segment_name,
        )
        uow.commit()
    if send:
        ctx.enqueue.gather_draft(batch_key(dataset_id, draft_number, segment_name))


class _NothingWaiting(Exception):
    """Another gathering took the objects first: no job is made."""


def gather(ctx: ImportContext, key: str) -> str:
    """Make one import job of the objects waiting in a draft's segment (what a
    `bayport.gather_draft` task does). Idempotent: with nothing waiting it does nothing.

    It first stands its queued mark down, in a transaction of its own: a registration that
    commits after that queues the next gathering itself, and every one that committed
    before is seen by this one, which looks only afterwards. No lock is held across calls:
    registrations and gatherings run side by side (at worst a gathering finds nothing)."""
    dataset_id, draft_number, segment_name = _parse_key(key)
    where: dict[str, Any] = {
        "dataset_id": dataset_id,
        "draft_number": draft_number,
        "segment_name": segment_name,
    }
    nothing = f"draft {draft_number} segment {segment_name!r}: nothing waiting"
    with ctx.db.uow() as uow:
        drafts.clear_draft_batch(uow.session, **where)
        uow.commit()
    with ctx.db.uow() as uow:
        s = uow.session
        dataset = s.get(Dataset, dataset_id)
        config = s.get(StorageConfig, dataset.config_id) if dataset and dataset.config_id else None
        waiting = drafts.waiting_draft_objects(s, **where)
        if dataset is None or config is None or waiting == 0:
            return nothing
        workspace_id, dataset_name, config_name = dataset.workspace_id, dataset.name, config.name
        storage_path = folder_of(config, dataset.path).prefix  # the cloud paths' bucket keys
    manifest = ImportManifest(
        dataset=dataset_name,
        segment=segment_name,
        source=SourceSpec(config_name=config_name, draft=draft_number),
        options=ImportOptions(concurrency=ctx.settings.draft_import_concurrency),
    )
    taken = [0]

    def take(s: Session, job: ImportJob) -> None:
        taken[0] = drafts.assign_draft_objects(s, **where, job_id=job.id)
        if taken[0] == 0:  # a concurrent gathering took them
            raise _NothingWaiting
        # Each object is placed by where it lies (JobPlace.registers); a job all of whose
        # objects lie in the dataset's storage path already is an in-place job.
        job.in_place = drafts.draft_objects_outside(s, job_id=job.id, prefix=storage_path) == 0

    try:
        job = submit(ctx, workspace_id=workspace_id, manifest=manifest, before_commit=take).job
    except _NothingWaiting:
        return nothing
    except Conflict:
        # A job runs on the segment (this draft's earlier batch, or another import): the
        # objects wait for it, and a gathering looks again shortly: this one, unless a
        # registration has queued one since.
        with ctx.db.uow() as uow:
            again = drafts.flag_draft_batch(uow.session, **where)
            uow.commit()
        if again:
            ctx.enqueue.gather_draft(key, delay=BUSY_RETRY_SECONDS)
        return f"draft {draft_number} segment {segment_name!r}: {waiting} wait for a running job"
    except (NotFound, Invalid) as exc:
        log.warning("draft %s of dataset %s: gathering failed: %s", draft_number, dataset_id, exc)
        raise
    log.info(
        "draft %s segment %r: job %s takes %d objects", draft_number, segment_name, job.id, taken[0]
    )
    return f"draft {draft_number} segment {segment_name!r}: job {job.id} takes {taken[0]} objects"


@dataclass(frozen=True)
class DraftProgress:
    """Where a draft's registered objects are: waiting, in jobs still running, or done."""

    waiting: int
    running_jobs: int
    jobs: int
    failed: int  # objects that failed, in the draft's finished jobs

    @property
    def settled(self) -> bool:
        return self.waiting == 0 and self.running_jobs == 0


def progress(ctx: ImportContext, *, dataset_id: str, draft_number: int) -> DraftProgress:
    with ctx.db.uow() as uow:
        s = uow.session
        waiting = drafts.waiting_draft_objects(s, dataset_id=dataset_id, draft_number=draft_number)
        job_ids = drafts.draft_job_ids(s, dataset_id=dataset_id, draft_number=draft_number)
        jobs = s.exec(select(ImportJob).where(col(ImportJob.id).in_(job_ids))).all()
        running = sum(1 for j in jobs if not JobState(j.state).is_final)
        failed = sum(j.failed for j in jobs if JobState(j.state).is_final)
    return DraftProgress(waiting=waiting, running_jobs=running, jobs=len(job_ids), failed=failed)


def nudge(ctx: ImportContext, *, dataset_id: str, draft_number: int) -> None:
    """Queue a gathering of every segment of the draft with objects waiting, queued or
    not: a gathering message the broker lost must not leave them waiting for good."""
    with ctx.db.uow() as uow:
        segments = drafts.waiting_draft_segments(
            uow.session, dataset_id=dataset_id, draft_number=draft_number
        )
    for segment_name in segments:
        ctx.enqueue.gather_draft(batch_key(dataset_id, draft_number, segment_name))
