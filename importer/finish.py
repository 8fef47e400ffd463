"""Finishing a job once listing and every shard are done: report the label files no object
paired with, then freeze the counts and set the final state — exactly once."""

from __future__ import annotations

import functools
from datetime import timedelta

from sqlalchemy import or_, update
from sqlmodel import col

from importer.context import ImportContext, log
from importer.jobs import (
    JobPlace,
    dataset_store,
    finalize_job,
    finish_listing,
    load_place,
    source_store,
)
from importer.rules import destination_key
from metadata.models import ImportJob, JobState, utcnow
from metadata.queries import jobs, labels, notes
from metadata.queries import ledger as ledger_q
from storage_adapters.errors import StorageError

LABEL_WITHOUT_OBJECT = "label_without_object"


def finishing_stale_after(ctx: ImportContext) -> timedelta:
    """A finishing task that has shown no progress for this long is taken to have died (it
    refreshes its claim with every page of the label report): three leases."""
    return timedelta(seconds=3 * ctx.settings.lease_seconds)


def finish_if_ready(ctx: ImportContext, job_id: str) -> None:
    """Finish the job if listing is done and no shard is pending. Safe to call from every
    task at its end: one caller claims the finishing, the others return."""
    with ctx.db.uow() as uow:
        job = uow.session.get(ImportJob, job_id)
        if job is None or JobState(job.state).is_final or not job.listing_done:
            return
        if jobs.shards_pending(uow.session, job_id=job_id):
            return
        place = load_place(uow.session, job)
    if not _claim(ctx, job_id):
        return
    manifest = place.manifest
    if (
        not place.job.cancel_requested
        and place.job.error is None
        and place.job.run == 1
        and (manifest.source.label_prefix is not None or manifest.source.coco_file is not None)
        and not manifest.options.dry_run
    ):
        try:
            _report_labels_without_object(ctx, place)
        except StorageError as exc:  # the report is a courtesy: the import itself is done
            log.warning("job %s: could not list the label folder: %s", job_id, exc)
    if not place.job.in_place and not manifest.options.dry_run:
        try:
            _abort_leftover_uploads(ctx, place)
        except StorageError as exc:  # they expire by the bucket's lifecycle rules anyway
            log.warning("job %s: could not drop unfinished uploads: %s", job_id, exc)
    with ctx.db.uow() as uow:
        job = jobs.lock_job(uow.session, job_id=job_id)
        if job is not None:
            finalize_job(uow.session, job)
            uow.commit()


def _abort_leftover_uploads(ctx: ImportContext, place: JobPlace) -> None:
    """Drop the multipart uploads a killed copy of this job left unfinished (its parts
    cost storage until aborted). Before the job ends: no copy of it is in flight, and no
    other job may start on the segment yet. Only uploads to keys the job's ledger names
    are its own (Azure lists none: its uncommitted blocks expire by themselves)."""
    dest = dataset_store(ctx, place)
    if not dest.capabilities.lists_uploads:
        return
    folder = destination_key(place.dataset.path, place.segment.name, "")
    uploads = dest.list_uploads(folder)
    if not uploads:
        return
    with ctx.db.uow() as uow:
        own = ledger_q.job_dest_keys(uow.session, job_id=place.job.id, keys=[k for k, _ in uploads])
    dropped = 0
    for key, upload_id in uploads:
        if key in own:
            ctx.retry.call(functools.partial(dest.abort_multipart, key, upload_id))
            dropped += 1
    if dropped:
        log.info(
            "job %s: dropped %d unfinished uploads left by killed copies", place.job.id, dropped
        )


def _claim(ctx: ImportContext, job_id: str) -> bool:
    now = utcnow()
    with ctx.db.uow() as uow:
        result = uow.session.execute(
            update(ImportJob)
            .where(
                col(ImportJob.id) == job_id,
                or_(
                    col(ImportJob.finishing_at).is_(None),
                    col(ImportJob.finishing_at) < now - finishing_stale_after(ctx),
                ),
            )
            .values(finishing_at=now)
        )
        uow.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _report_labels_without_object(ctx: ImportContext, place: JobPlace) -> None:
    """List the label folder page by page; a label file whose key no ledger entry of the
    segment pairs with is noted. Runs after every shard, so the ledger is complete."""
    spec = place.manifest.source
    with ctx.db.uow() as uow:
        notes.clear_job_notes(uow.session, job_id=place.job.id, kind=LABEL_WITHOUT_OBJECT)
        uow.commit()
    if spec.coco_file is not None:
        _report_coco_images_without_object(ctx, place)
        return
    assert spec.label_prefix is not None
    source = source_store(ctx, place)
    total, cursor = 0, None
    while True:
        page = ctx.retry.call(functools.partial(source.list_page, spec.label_prefix, cursor=cursor))
        keys = [o.key for o in page.objects if o.key.endswith(spec.suffix)]
        with ctx.db.uow() as uow:
            paired = ledger_q.label_keys_paired(
                uow.session, segment_id=place.segment.id, label_keys=keys
            )
            orphans = [k for k in keys if k not in paired]
            notes.add_job_notes(
                uow.session, job_id=place.job.id, kind=LABEL_WITHOUT_OBJECT, keys=orphans
            )
            total += len(orphans)
            job = jobs.lock_job(uow.session, job_id=place.job.id)
            if job is not None:
                job.labels_without_object = total
                job.finishing_at = utcnow()  # alive: the claim is not stale
            uow.commit()
        if page.cursor is None:
            break
        cursor = page.cursor
    if total:
        log.info("job %s: %d label files pair with no object", place.job.id, total)


def _report_coco_images_without_object(ctx: ImportContext, place: JobPlace) -> None:
    """The COCO file's images that no listed object is: noted by their file_name."""
    total, after = 0, 0
    while True:
        with ctx.db.uow() as uow:
            rows = labels.import_labels_without_object(
                uow.session,
                job_id=place.job.id,
                segment_id=place.segment.id,
                after_id=after,
                limit=1000,
            )
            if not rows:
                return
            notes.add_job_notes(
                uow.session,
                job_id=place.job.id,
                kind=LABEL_WITHOUT_OBJECT,
                keys=[f"{place.manifest.source.coco_file}#{r.name}" for r in rows],
            )
            total += len(rows)
            after = rows[-1].id or after
            job = jobs.lock_job(uow.session, job_id=place.job.id)
            if job is not None:
                job.labels_without_object = total
                job.finishing_at = utcnow()  # alive: the claim is not stale
            uow.commit()


def abandon_planning(ctx: ImportContext, job_id: str, reason: str) -> None:
    """The planning task failed for good: the job ends (failed) once its shards are done."""
    with ctx.db.uow() as uow:
        job = jobs.lock_job(uow.session, job_id=job_id)
        if job is None or JobState(job.state).is_final:
            return
        job.error = reason
        finish_listing(uow.session, job)
        uow.commit()
    finish_if_ready(ctx, job_id)
