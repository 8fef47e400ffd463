"""Planning a job: take its planning lease, plan from the job's source, end the listing."""

from __future__ import annotations

from bayport.logs import log_context
from importer import recovery
from importer.context import ImportContext, log
from importer.finish import finish_if_ready
from importer.jobs import JobPlace, finish_listing, load_place
from importer.planner.listing import plan_from_listing
from importer.planner.sources import plan_from_draft, plan_from_failures, plan_from_object_list
from metadata.models import JobState, utcnow
from metadata.queries import jobs
from storage_adapters.errors import StorageError


def plan_import(ctx: ImportContext, job_id: str) -> None:
    """List the job's source page by page and write shards, enqueueing each shard's copy as
    soon as its page commits. Resumes from the stored cursor when redelivered."""
    with log_context(job_id=job_id):
        _plan_import(ctx, job_id)


def _plan_import(ctx: ImportContext, job_id: str) -> None:
    with ctx.db.uow() as uow:
        job = jobs.lock_job(uow.session, job_id=job_id)
        if job is None or JobState(job.state).is_final:
            return
        if job.listing_done:  # redelivered after listing: only the finishing may be left
            uow.commit()
            finish_if_ready(ctx, job_id)
            return
        place = load_place(uow.session, job)
        resuming = job.state != JobState.QUEUED
        if job.cancel_requested:
            finish_listing(uow.session, job)
            uow.commit()
            finish_if_ready(ctx, job_id)
            return
        token = recovery.claim_planning(ctx, uow.session, job_id)
        if token is None:
            log.info("job %s: another live task is planning it: this delivery leaves", job_id)
            return
        if not resuming:
            job.state = JobState.LISTING.value
            job.started_at = job.started_at or utcnow()
        uow.commit()
    with recovery.planning_heartbeat(ctx, job_id, token):
        _list_and_shard(ctx, place, resuming=resuming)


def _list_and_shard(ctx: ImportContext, place: JobPlace, *, resuming: bool) -> None:
    """Planning proper, under the planning's lease: stops (leaving listing undone) if
    another task takes the lease over."""
    job_id = place.job.id
    if resuming:  # a redelivered plan: shards committed before the crash may not be queued
        with ctx.db.uow() as uow:
            for shard_id in jobs.pending_shard_ids(uow.session, job_id=job_id):
                ctx.enqueue.copy_shard(shard_id, job_id=job_id)

    try:
        if place.job.run > 1:
            plan_from_failures(ctx, place)
        elif place.manifest.source.object_list is not None:
            plan_from_object_list(ctx, place)
        elif place.manifest.source.draft is not None:
            plan_from_draft(ctx, place)
        else:
            plan_from_listing(ctx, place)
    except StorageError as exc:
        log.warning("job %s: listing failed: %s", job_id, exc)
        with ctx.db.uow() as uow:
            job = jobs.lock_job(uow.session, job_id=job_id)
            if job is not None:
                job.error = f"listing {place.source_config.name!r} failed: {exc}"
                finish_listing(uow.session, job)
                uow.commit()
        finish_if_ready(ctx, job_id)
        return
    if recovery.lease_lost():  # another task took the planning over: it goes on
        return
    with ctx.db.uow() as uow:
        job = jobs.lock_job(uow.session, job_id=job_id)
        if job is not None:
            finish_listing(uow.session, job)
            uow.commit()
    finish_if_ready(ctx, job_id)
