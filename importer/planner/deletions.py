"""A sync's deletions, after a complete listing: held back past the job's limits, else
written as delete shards."""

from __future__ import annotations

from importer.context import ImportContext, log
from importer.jobs import JobPlace
from importer.planner.notes import DELETE_CANDIDATE
from importer.planner.writer import write_shards
from importer.rules import PlannedObject
from metadata.queries import jobs
from metadata.queries import ledger as ledger_q
from metadata.queries import notes as notes_q


def plan_deletions(ctx: ImportContext, place: JobPlace) -> None:
    """After a complete listing: delete what is gone from the source — unless that is more
    than the job's limits allow, or the listing was empty: then nothing is deleted and the
    job is marked for review, saying why."""
    opts = place.manifest.options
    if not opts.delete:
        return
    with ctx.db.uow() as uow:
        s = uow.session
        job = jobs.lock_job(s, job_id=place.job.id)
        if job is None or job.cancel_requested:
            return
        gone = notes_q.count_notes(s, job_id=job.id, kind=DELETE_CANDIDATE)
        held = job.review_reason
        if gone and held is None:
            total = ledger_q.present_from_source(
                s,
                segment_id=place.segment.id,
                source_config_id=place.source_config.id,
                key_prefix=place.manifest.source.data_prefix,
            )
            held = deletion_guard(
                gone=gone,
                total=total,
                listed=job.listed,
                max_delete=opts.max_delete,
                max_delete_percent=opts.max_delete_percent,
            )
            job.review_reason = held
        uow.commit()
    if not gone or held is not None:
        if held:
            log.warning("job %s: deletions held: %s", place.job.id, held)
        return
    if opts.dry_run:
        return
    after = 0
    while True:
        with ctx.db.uow() as uow:
            notes = notes_q.notes_after(
                uow.session,
                job_id=place.job.id,
                kind=DELETE_CANDIDATE,
                after_id=after,
                limit=opts.shard_size,
            )
        if not notes:
            return
        prefix = place.manifest.source.data_prefix
        doomed = [
            PlannedObject(key=prefix + n.key, size=None, etag=None, md5=None, label_key=None)
            for n in notes
        ]
        if not write_shards(ctx, place, doomed, cursor=None, kind="delete"):
            return
        after = notes[-1].id or after


def deletion_guard(
    *, gone: int, total: int, listed: int, max_delete: int, max_delete_percent: float
) -> str | None:
    """Why `gone` deletions must be held back, or None when they may go ahead."""
    if listed == 0:
        return (
            f"the source listing was empty, so the {gone} objects the ledger holds from it "
            "were not deleted (an empty listing never deletes: a typo or an outage must not "
            "wipe a dataset)"
        )
    percent = 100.0 * gone / total if total else 100.0
    if gone > max_delete:
        return (
            f"{gone} of {total} objects ({percent:.0f}%) are gone from the source, more than "
            f"max_delete {max_delete}: nothing was deleted. Check the source; to delete them, "
            "run again with a higher max_delete"
        )
    if percent > max_delete_percent:
        return (
            f"{gone} of {total} objects ({percent:.0f}%) are gone from the source, more than "
            f"max_delete_percent {max_delete_percent:g}%: nothing was deleted. Check the "
            "source; to delete them, run again with a higher max_delete_percent"
        )
    return None
