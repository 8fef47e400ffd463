"""Planning a job: list the source page by page and write shards, resumably."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

from importer.context import ImportContext, log
from importer.finish import finish_if_ready
from importer.jobs import JobPlace, dataset_store, finish_listing, load_place
from importer.rules import (
    PlannedObject,
    destination_key,
    plan_page,
    remote_path,
    split_into_shards,
)
from labels.formats.coco import CocoIndex
from metadata import repository as repo
from metadata.models import (
    JobState,
    Outcome,
    Shard,
    utcnow,
)
from storage_adapters.base import ObjectStore
from storage_adapters.errors import StorageError


def plan_import(ctx: ImportContext, job_id: str) -> None:
    """List the job's source page by page and write shards, enqueueing each shard's copy as
    soon as its page commits. Resumes from the stored cursor when redelivered."""
    with ctx.db.uow() as uow:
        job = repo.lock_job(uow.session, job_id=job_id)
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
        if not resuming:
            job.state = JobState.LISTING.value
            job.started_at = job.started_at or utcnow()
        uow.commit()
    if resuming:  # a redelivered plan: shards committed before the crash may not be queued
        with ctx.db.uow() as uow:
            for shard_id in repo.pending_shard_ids(uow.session, job_id=job_id):
                ctx.enqueue.copy_shard(shard_id)

    try:
        if place.job.run == 1:
            _plan_from_listing(ctx, place)
        else:
            _plan_from_failures(ctx, place)
    except StorageError as exc:
        log.warning("job %s: listing failed: %s", job_id, exc)
        with ctx.db.uow() as uow:
            job = repo.lock_job(uow.session, job_id=job_id)
            if job is not None:
                job.error = f"listing {place.source_config.name!r} failed: {exc}"
                finish_listing(uow.session, job)
                uow.commit()
        finish_if_ready(ctx, job_id)
        return
    with ctx.db.uow() as uow:
        job = repo.lock_job(uow.session, job_id=job_id)
        if job is not None:
            finish_listing(uow.session, job)
            uow.commit()
    finish_if_ready(ctx, job_id)


def _plan_from_listing(ctx: ImportContext, place: JobPlace) -> None:
    src = place.source_config
    source = ctx.stores.for_config(src)
    manifest = place.manifest
    opts = manifest.options
    job_id = place.job.id
    if place.job.list_cursor is None and not place.job.in_place and not opts.dry_run:
        dest = dataset_store(ctx, place)
        folder = destination_key(place.dataset.path, place.segment.name, "")
        first = ctx.retry.call(lambda: dest.list_page(folder, limit=1))
        with ctx.db.uow() as uow:
            job = repo.lock_job(uow.session, job_id=job_id)
            if job is not None:
                job.dest_was_empty = not first.objects
                uow.commit()
    if place.job.list_cursor is None and manifest.source.coco_file is not None:
        load_coco_labels(ctx, place, source)
    cursor = place.job.list_cursor
    limit = min(ctx.settings.list_page_size, source.capabilities.max_list_page)
    while True:
        page = ctx.retry.call(
            functools.partial(
                source.list_page, manifest.source.data_prefix, cursor=cursor, limit=limit
            )
        )
        planned = plan_page(
            page.objects,
            data_prefix=manifest.source.data_prefix,
            label_prefix=manifest.source.label_prefix,
            label_suffix=manifest.source.suffix,
        )
        if not _write_page(ctx, place, planned, listed=page.objects, cursor=page.cursor):
            return  # cancelled
        if page.cursor is None:
            return
        cursor = page.cursor


def _plan_from_failures(ctx: ImportContext, place: JobPlace) -> None:
    after = int(place.job.list_cursor or 0)
    while True:
        with ctx.db.uow() as uow:
            rows = repo.failed_entries_page(
                uow.session,
                job_id=place.job.id,
                after_id=after,
                limit=place.manifest.options.shard_size,
            )
            # Sizes and ETags are looked up again: the user may have fixed the object.
            planned = [
                PlannedObject(
                    key=r.source_key, size=None, etag=None, md5=None, label_key=r.label_key
                )
                for r in rows
            ]
            last = rows[-1].id if rows else None
        if last is None:
            return
        if not _write_page(ctx, place, planned, listed=(), cursor=str(last)):
            return
        after = last


def _write_page(
    ctx: ImportContext,
    place: JobPlace,
    planned: list[PlannedObject],
    *,
    listed: Any,
    cursor: str | None,
) -> bool:
    """Skip what the ledger already holds, write the rest as shards with the cursor in one
    transaction, then enqueue them. False when the job was cancelled."""
    opts = place.manifest.options
    with ctx.db.uow() as uow:
        s = uow.session
        job = repo.lock_job(s, job_id=place.job.id)
        if job is None or job.cancel_requested:
            return False
        to_copy = planned
        # With `move` every listed object goes to a shard, so that its source is deleted
        # once the copy is verified, even when the ledger already has it.
        if opts.overwrite == "skip_existing" and job.run == 1 and not opts.move:
            to_copy, skip_ids = _known_unchanged(s, place, planned)
            if opts.dry_run:
                job.skipped += len(skip_ids)
            else:
                repo.mark_skipped(s, entry_ids=skip_ids, job_id=job.id)
        job.listed += len(listed)
        job.bytes_listed += sum(o.size for o in listed)
        job.planned += len(to_copy)
        shard_ids = []
        if not opts.dry_run:
            for chunk in split_into_shards(
                to_copy, shard_size=opts.shard_size, byte_cap=ctx.settings.shard_byte_cap
            ):
                shard = Shard(
                    job_id=job.id,
                    seq=job.next_shard_seq,
                    run=job.run,
                    items=[o.to_item() for o in chunk],
                    object_count=len(chunk),
                    byte_count=sum(o.size or 0 for o in chunk),
                )
                s.add(shard)
                job.next_shard_seq += 1
                job.shards_total += 1
                shard_ids.append(shard.id)
        job.list_cursor = cursor
        uow.commit()
    for shard_id in shard_ids:
        ctx.enqueue.copy_shard(shard_id)
    return True


def _known_unchanged(
    s: Any, place: JobPlace, planned: list[PlannedObject]
) -> tuple[list[PlannedObject], list[int]]:
    """Split off the objects the ledger holds unchanged (same source key, size, ETag and
    label file): they are skipped without a single storage request."""
    prefix = place.manifest.source.data_prefix
    known = repo.ledger_entries_by_path(
        s, segment_id=place.segment.id, remote_paths=(remote_path(o.key, prefix) for o in planned)
    )
    keep, skip_ids = [], []
    present = {Outcome.COPIED.value, Outcome.REGISTERED.value, Outcome.SKIPPED.value}
    for obj in planned:
        entry = known.get(remote_path(obj.key, prefix))
        if (
            entry is not None
            and entry.id is not None
            and entry.outcome in present
            and entry.source_config_id == place.source_config.id
            and entry.source_key == obj.key
            and entry.source_etag == obj.etag
            and entry.size == obj.size
            and entry.label_key == obj.label_key
        ):
            skip_ids.append(entry.id)
        else:
            keep.append(obj)
    return keep, skip_ids


def load_coco_labels(ctx: ImportContext, place: JobPlace, source: ObjectStore) -> None:
    """Read the segment's COCO file once, streamed (to a temporary file, indexed on disk),
    and store each image's label for the shard copiers. Memory stays flat in its size."""
    coco_key = place.manifest.source.coco_file
    assert coco_key is not None
    with tempfile.TemporaryDirectory(prefix="bayport-coco-") as tmp:
        path = Path(tmp) / "coco.json"

        def download() -> None:
            with path.open("wb") as out:
                for chunk in source.open(coco_key):
                    out.write(chunk)

        ctx.retry.call(download)
        with ctx.db.uow() as uow:
            repo.clear_import_labels(uow.session, job_id=place.job.id)
            uow.commit()
        with CocoIndex.build(lambda: path.open("rb"), Path(tmp) / "coco.db") as index:
            batch: list[tuple[str, dict[str, Any] | None]] = []
            for name in index.file_names():
                batch.append((name, index.label_for(name) or None))
                if len(batch) >= 1000:
                    _store_labels(ctx, place.job.id, batch)
                    batch = []
            _store_labels(ctx, place.job.id, batch)


def _store_labels(
    ctx: ImportContext, job_id: str, batch: list[tuple[str, dict[str, Any] | None]]
) -> None:
    with ctx.db.uow() as uow:
        repo.add_import_labels(uow.session, job_id=job_id, labels=batch)
        uow.commit()
