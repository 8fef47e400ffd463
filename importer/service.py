"""The import use cases: submit, plan (list + shard), copy a shard, finalize, cancel, retry.

Each takes its collaborators (a Database, a StoreResolver, an Enqueuer) as arguments; the
API, the Celery tasks and the CLI are thin entry points over these functions.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from bayport.settings import Settings
from importer.copier import CopyLimits, checksum_of, copy_object, matches
from importer.errors import Conflict, Invalid, NotFound
from importer.manifest import ImportManifest
from importer.planning import (
    PlannedObject,
    destination_key,
    is_in_place,
    plan_page,
    remote_path,
    split_into_shards,
)
from importer.ports import Enqueuer, StoreResolver
from labels.parse import LabelError, parse_label
from metadata import repository as repo
from metadata.db import Database
from metadata.models import (
    Dataset,
    ImportJob,
    JobState,
    LedgerEntry,
    Outcome,
    Segment,
    Shard,
    StorageConfig,
    utcnow,
)
from storage_adapters.base import ObjectInfo, ObjectStore
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.retry import RetryPolicy

log = logging.getLogger("bayport.importer")


@dataclass(frozen=True)
class ImportContext:
    """Everything the use cases need, wired once by the composition root."""

    db: Database
    stores: StoreResolver
    enqueue: Enqueuer
    settings: Settings

    @property
    def retry(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(
            attempts=s.retry_attempts, initial_wait=s.retry_initial_wait, max_wait=s.retry_max_wait
        )

    @property
    def copy_limits(self) -> CopyLimits:
        s = self.settings
        return CopyLimits(
            multipart_threshold=s.multipart_threshold,
            part_size=s.multipart_part_size,
            max_single_copy_size=s.max_single_copy_size,
        )


# --- submit ---------------------------------------------------------------------------


def submit_import(ctx: ImportContext, *, workspace_id: str, manifest: ImportManifest) -> ImportJob:
    """Record a job for `manifest` and enqueue its planning (after the commit)."""
    with ctx.db.uow() as uow:
        s = uow.session
        dataset = repo.get_dataset(s, workspace_id=workspace_id, name=manifest.dataset)
        if dataset is None:
            raise NotFound(f"dataset {manifest.dataset!r} does not exist", field="dataset")
        config = repo.get_config(s, workspace_id=workspace_id, name=manifest.source.config_name)
        if config is None:
            raise NotFound(
                f"storage config {manifest.source.config_name!r} does not exist",
                field="source.config_name",
            )
        segment = repo.get_or_create_segment(s, dataset_id=dataset.id, name=manifest.segment)
        # One import at a time per segment: the ledger row of an object says which job last
        # touched it, and two jobs racing on one segment would take each other's objects.
        running = repo.running_job_on_segment(s, segment_id=segment.id)
        if running is not None:
            raise Conflict(
                f"import job {running.id} is still {running.state} on segment "
                f"{manifest.segment!r} of {manifest.dataset!r}: wait for it or cancel it",
                field="segment",
            )
        in_place = is_in_place(
            source_config_id=config.id,
            data_prefix=manifest.source.data_prefix,
            dataset_config_id=dataset.config_id,
            dataset_path=dataset.path,
        )
        job = ImportJob(
            workspace_id=workspace_id,
            dataset_id=dataset.id,
            segment_id=segment.id,
            source_config_id=config.id,
            manifest=manifest.model_dump(mode="json"),
            in_place=in_place,
        )
        s.add(job)
        uow.commit()
    ctx.enqueue.plan_import(job.id)
    return job


# --- plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _JobPlace:
    """What planning and copying need to know about a job's source and destination."""

    job: ImportJob
    manifest: ImportManifest
    dataset: Dataset
    segment: Segment
    source_config: StorageConfig
    dataset_config: StorageConfig | None

    def dest_key(self, key: str) -> str:
        rel = remote_path(key, self.manifest.source.data_prefix)
        if self.job.in_place:
            return key
        return destination_key(self.dataset.path, self.segment.name, rel)


def _load_place(s: Any, job: ImportJob) -> _JobPlace:
    dataset = s.get(Dataset, job.dataset_id)
    segment = s.get(Segment, job.segment_id)
    source_config = s.get(StorageConfig, job.source_config_id)
    if dataset is None or segment is None or source_config is None:
        raise Invalid(f"job {job.id} refers to a deleted dataset, segment or storage config")
    dataset_config = s.get(StorageConfig, dataset.config_id) if dataset.config_id else None
    return _JobPlace(
        job=job,
        manifest=ImportManifest.model_validate(job.manifest),
        dataset=dataset,
        segment=segment,
        source_config=source_config,
        dataset_config=dataset_config,
    )


def _dataset_store(ctx: ImportContext, place: _JobPlace) -> ObjectStore:
    if place.dataset_config is None:
        return ctx.stores.default_storage()
    return ctx.stores.for_config(place.dataset_config)


def plan_import(ctx: ImportContext, job_id: str) -> None:
    """List the job's source page by page and write shards, enqueueing each shard's copy as
    soon as its page commits. Resumes from the stored cursor when redelivered."""
    with ctx.db.uow() as uow:
        job = repo.lock_job(uow.session, job_id=job_id)
        if job is None or JobState(job.state).is_final or job.listing_done:
            return
        place = _load_place(uow.session, job)
        resuming = job.state != JobState.QUEUED
        if job.cancel_requested:
            _finish_listing(uow.session, job)
            uow.commit()
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
                _finish_listing(uow.session, job)
                uow.commit()
        return
    with ctx.db.uow() as uow:
        job = repo.lock_job(uow.session, job_id=job_id)
        if job is not None:
            _finish_listing(uow.session, job)
            uow.commit()


def _plan_from_listing(ctx: ImportContext, place: _JobPlace) -> None:
    src = place.source_config
    source = ctx.stores.for_config(src)
    manifest = place.manifest
    opts = manifest.options
    job_id = place.job.id
    if place.job.list_cursor is None and not place.job.in_place and not opts.dry_run:
        dest = _dataset_store(ctx, place)
        folder = destination_key(place.dataset.path, place.segment.name, "")
        first = ctx.retry.call(lambda: dest.list_page(folder, limit=1))
        with ctx.db.uow() as uow:
            job = repo.lock_job(uow.session, job_id=job_id)
            if job is not None:
                job.dest_was_empty = not first.objects
                uow.commit()
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
            label_suffix=manifest.source.label_suffix,
        )
        if not _write_page(ctx, place, planned, listed=page.objects, cursor=page.cursor):
            return  # cancelled
        if page.cursor is None:
            return
        cursor = page.cursor


def _plan_from_failures(ctx: ImportContext, place: _JobPlace) -> None:
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
    place: _JobPlace,
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
        if opts.overwrite == "skip_existing" and job.run == 1:
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
    s: Any, place: _JobPlace, planned: list[PlannedObject]
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


def _finish_listing(s: Any, job: ImportJob) -> None:
    """Listing is over (done, failed or cancelled): finalize now if no shard is left."""
    job.listing_done = True
    if repo.shards_pending(s, job_id=job.id) == 0:
        _finalize(s, job)
    elif job.state == JobState.LISTING:
        job.state = JobState.COPYING.value


def _finalize(s: Any, job: ImportJob) -> None:
    """Freeze the counts and set the final state. Runs once: under the job's row lock, by
    whichever of listing or the last shard finishes last."""
    if JobState(job.state).is_final:
        return
    if not job.manifest.get("options", {}).get("dry_run"):
        counts = repo.job_counts(s, job_id=job.id)
        job.copied, job.registered = counts.copied, counts.registered
        job.skipped, job.failed = counts.skipped, counts.failed
        job.bytes_copied = counts.bytes_copied
    done = job.copied + job.registered + job.skipped
    if job.cancel_requested:
        state = JobState.CANCELLED
    elif job.error is not None or (job.failed and not done):
        state = JobState.FAILED
    elif job.failed:
        state = JobState.PARTIALLY_FAILED
    else:
        state = JobState.SUCCEEDED
    job.state = state.value
    job.finished_at = utcnow()
    log.info(
        "job %s %s: copied %d, registered %d, skipped %d, failed %d",
        job.id,
        state.value,
        job.copied,
        job.registered,
        job.skipped,
        job.failed,
    )


# --- copy a shard ---------------------------------------------------------------------


@dataclass(frozen=True)
class ShardResult:
    copied: int = 0
    registered: int = 0
    skipped: int = 0
    failed: int = 0

    def __str__(self) -> str:
        moved = f"registered {self.registered}" if self.registered else f"copied {self.copied}"
        return f"{moved}, skipped {self.skipped}, failed {self.failed}"


def copy_shard(ctx: ImportContext, shard_id: str) -> ShardResult:
    """Copy (or register) a shard's objects with `concurrency` threads, writing ledger rows
    in batches. Idempotent: objects this job already finished are not redone."""
    with ctx.db.uow() as uow:
        s = uow.session
        shard = s.get(Shard, shard_id)
        if shard is None or shard.done:
            return ShardResult()
        job = s.get(ImportJob, shard.job_id)
        if job is None:
            return ShardResult()
        place = _load_place(s, job)
        items = [PlannedObject.from_item(i) for i in shard.items]
        prefix = place.manifest.source.data_prefix
        finished = {
            path
            for path, entry in repo.ledger_entries_by_path(
                s,
                segment_id=place.segment.id,
                remote_paths=(remote_path(o.key, prefix) for o in items),
            ).items()
            if entry.job_id == job.id and entry.outcome != Outcome.FAILED.value
        }
        cancelled = job.cancel_requested
    todo = [o for o in items if remote_path(o.key, prefix) not in finished]
    tally: dict[str, int] = {}
    if not cancelled and todo:
        tally = _copy_objects(
            ctx, place, todo, check_dest=not place.job.dest_was_empty or shard.run > 1
        )
    _complete_shard(ctx, job_id=place.job.id, shard_id=shard_id)
    return ShardResult(
        copied=tally.get(Outcome.COPIED, 0),
        registered=tally.get(Outcome.REGISTERED, 0),
        skipped=tally.get(Outcome.SKIPPED, 0),
        failed=tally.get(Outcome.FAILED, 0),
    )


def _complete_shard(ctx: ImportContext, *, job_id: str, shard_id: str) -> None:
    with ctx.db.uow() as uow:
        job = repo.lock_job(uow.session, job_id=job_id)
        shard = uow.session.get(Shard, shard_id)
        if job is None or shard is None or shard.done:
            return
        shard.done = True
        shard.finished_at = utcnow()
        if job.listing_done and repo.shards_pending(uow.session, job_id=job.id) == 0:
            _finalize(uow.session, job)
        uow.commit()


def abandon_shard(ctx: ImportContext, shard_id: str, reason: str) -> None:
    """A shard whose task failed for good (not an object's fault: every object failure is
    caught): its unfinished objects fail with `reason`, so the job can still end."""
    with ctx.db.uow() as uow:
        s = uow.session
        shard = s.get(Shard, shard_id)
        job = s.get(ImportJob, shard.job_id) if shard else None
        if shard is None or job is None or shard.done:
            return
        place = _load_place(s, job)
        items = [PlannedObject.from_item(i) for i in shard.items]
        prefix = place.manifest.source.data_prefix
        known = repo.ledger_entries_by_path(
            s, segment_id=place.segment.id, remote_paths=(remote_path(o.key, prefix) for o in items)
        )
    rows = []
    for obj in items:
        entry = known.get(remote_path(obj.key, prefix))
        if entry is None or entry.job_id != job.id or entry.outcome == Outcome.FAILED.value:
            row = _ledger_row(place, obj)
            row.update(
                outcome=Outcome.FAILED.value,
                error_code="internal",
                error_message=reason,
                attempts=1,
            )
            rows.append(row)
    _write_ledger(ctx, rows)
    _complete_shard(ctx, job_id=job.id, shard_id=shard_id)


def abandon_planning(ctx: ImportContext, job_id: str, reason: str) -> None:
    """The planning task failed for good: the job ends (failed) once its shards are done."""
    with ctx.db.uow() as uow:
        job = repo.lock_job(uow.session, job_id=job_id)
        if job is None or JobState(job.state).is_final:
            return
        job.error = reason
        _finish_listing(uow.session, job)
        uow.commit()


def _copy_objects(
    ctx: ImportContext, place: _JobPlace, todo: list[PlannedObject], *, check_dest: bool
) -> dict[str, int]:
    source = ctx.stores.for_config(place.source_config)
    dest = source if place.job.in_place else _dataset_store(ctx, place)
    worker = _ObjectImporter(ctx, place, source, dest, check_dest=check_dest)
    tally: dict[str, int] = {}
    batch: list[dict[str, Any]] = []
    for row in _run_bounded(worker.run, todo, place.manifest.options.concurrency, ctx, place):
        batch.append(row)
        tally[row["outcome"]] = tally.get(row["outcome"], 0) + 1
        if len(batch) >= ctx.settings.ledger_batch_size:
            _write_ledger(ctx, batch)
            batch = []
    _write_ledger(ctx, batch)
    return tally


def _write_ledger(ctx: ImportContext, rows: list[dict[str, Any]]) -> None:
    if rows:
        with ctx.db.uow() as uow:
            repo.upsert_ledger(uow.session, rows=rows)
            uow.commit()


def _run_bounded(
    fn: Any, items: list[PlannedObject], concurrency: int, ctx: ImportContext, place: _JobPlace
) -> Iterator[dict[str, Any]]:
    """Results of `fn` over `items`, at most `concurrency` in flight; stops starting new
    ones soon after the job is cancelled (checked about once a second)."""
    import time

    pending: set[Future[dict[str, Any]]] = set()
    it = iter(items)
    next_check = time.monotonic() + 1.0
    stopped = False
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="copy") as pool:
        while True:
            while not stopped and len(pending) < concurrency:
                obj = next(it, None)
                if obj is None:
                    stopped = True
                    break
                pending.add(pool.submit(fn, obj))
            if not pending:
                return
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
            if not stopped and time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                if _cancel_requested(ctx, place.job.id):
                    stopped = True


def _cancel_requested(ctx: ImportContext, job_id: str) -> bool:
    with ctx.db.uow() as uow:
        job = uow.session.get(ImportJob, job_id)
        return job is None or job.cancel_requested


def _ledger_row(place: _JobPlace, obj: PlannedObject) -> dict[str, Any]:
    """A ledger row for `obj` as this job sees it, before its outcome is known."""
    return {
        "dataset_id": place.dataset.id,
        "segment_id": place.segment.id,
        "remote_path": remote_path(obj.key, place.manifest.source.data_prefix),
        "job_id": place.job.id,
        "source_config_id": place.source_config.id,
        "source_key": obj.key,
        "source_etag": obj.etag,
        "dest_key": place.dest_key(obj.key),
        "size": obj.size or 0,
        "checksum": None,
        "label_key": obj.label_key,
        "label_type": None,
        "label": None,
        "error_code": None,
        "error_message": None,
        "updated_at": utcnow(),
    }


class _ObjectImporter:
    """Imports one object: reads and validates its label, then copies (or registers) it.
    Returns the ledger row; a failure fails this object alone, with its reason."""

    def __init__(
        self,
        ctx: ImportContext,
        place: _JobPlace,
        source: ObjectStore,
        dest: ObjectStore,
        *,
        check_dest: bool,
    ) -> None:
        self.ctx = ctx
        self.place = place
        self.source = source
        self.dest = dest
        self.check_dest = check_dest
        self.limits = ctx.copy_limits

    def run(self, obj: PlannedObject) -> dict[str, Any]:
        attempts = [1]

        def count(_exc: StorageError, _n: int) -> None:
            attempts[0] += 1

        place = self.place
        row = _ledger_row(place, obj)
        try:
            self._label(obj, row, count)
            info = self._source_info(obj, count)
            row["size"], row["source_etag"] = info.size, info.etag
            outcome = self._transfer(info, row, count)
            row["outcome"] = outcome.value
        except LabelError as exc:
            row.update(
                outcome=Outcome.FAILED.value,
                error_code="label_invalid",
                error_message=f"{obj.label_key}: {exc}",
            )
        except StorageError as exc:
            row.update(
                outcome=Outcome.FAILED.value, error_code=exc.kind.value, error_message=str(exc)
            )
        except Exception as exc:  # a bug must fail this object, not the shard
            log.exception("job %s: unexpected error on %s", place.job.id, obj.key)
            row.update(
                outcome=Outcome.FAILED.value,
                error_code="internal",
                error_message=f"{type(exc).__name__}: {exc}",
            )
        row["attempts"] = attempts[0]
        return row

    def _label(self, obj: PlannedObject, row: dict[str, Any], count: Any) -> None:
        if obj.label_key is None:
            return
        spec = self.place.manifest.source
        try:
            raw = self.ctx.retry.call(
                lambda: self.source.get_bytes(
                    obj.label_key or "", max_size=self.ctx.settings.max_label_size
                ),
                on_retry=count,
            )
        except StorageError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise
            if self.place.manifest.options.missing_label == "fail":
                raise StorageError(
                    ErrorKind.NOT_FOUND, "label file is missing", key=obj.label_key
                ) from exc
            row["label_key"] = None
            return
        label = parse_label(raw, label_type=spec.label_type)
        row["label"] = label
        row["label_type"] = ",".join(sorted(label))

    def _source_info(self, obj: PlannedObject, count: Any) -> ObjectInfo:
        if obj.size is not None:
            return ObjectInfo(key=obj.key, size=obj.size, etag=obj.etag, md5=obj.md5)
        return self.ctx.retry.call(lambda: self.source.head(obj.key), on_retry=count)

    def _transfer(self, info: ObjectInfo, row: dict[str, Any], count: Any) -> Outcome:
        if self.place.job.in_place:
            row["checksum"] = checksum_of(info)
            return Outcome.REGISTERED
        dst_key = row["dest_key"]
        if self.check_dest and self.place.manifest.options.overwrite == "skip_existing":
            try:
                existing = self.ctx.retry.call(lambda: self.dest.head(dst_key), on_retry=count)
            except StorageError as exc:
                if exc.kind is not ErrorKind.NOT_FOUND:
                    raise
            else:
                if matches(existing, info):
                    row["checksum"] = checksum_of(existing)
                    return Outcome.SKIPPED
        result = self.ctx.retry.call(
            lambda: copy_object(self.source, self.dest, info, dst_key, self.limits),
            on_retry=count,
        )
        row["size"], row["checksum"] = result.size, result.checksum
        return Outcome.COPIED


# --- cancel and retry -----------------------------------------------------------------


def cancel_import(ctx: ImportContext, *, workspace_id: str, job_id: str) -> ImportJob:
    with ctx.db.uow() as uow:
        job = repo.get_job(uow.session, workspace_id=workspace_id, job_id=job_id)
        if job is None:
            raise NotFound(f"import job {job_id!r} does not exist")
        job = repo.lock_job(uow.session, job_id=job_id)
        assert job is not None
        if JobState(job.state).is_final:
            raise Conflict(f"import job {job_id} has already ended ({job.state})")
        job.cancel_requested = True
        if job.listing_done and repo.shards_pending(uow.session, job_id=job.id) == 0:
            _finalize(uow.session, job)
        uow.commit()
        return job


def retry_import(ctx: ImportContext, *, workspace_id: str, job_id: str) -> ImportJob:
    """Re-run only the job's failed objects, as a new run of the same job."""
    with ctx.db.uow() as uow:
        job = repo.get_job(uow.session, workspace_id=workspace_id, job_id=job_id)
        if job is None:
            raise NotFound(f"import job {job_id!r} does not exist")
        job = repo.lock_job(uow.session, job_id=job_id)
        assert job is not None
        if not JobState(job.state).is_final:
            raise Conflict(f"import job {job_id} is still running ({job.state})")
        if job.manifest.get("options", {}).get("dry_run"):
            raise Conflict(f"import job {job_id} was a dry run: submit it again instead")
        if repo.job_counts(uow.session, job_id=job_id).failed == 0:
            raise Conflict(f"import job {job_id} has no failed objects to retry")
        job.run += 1
        job.state = JobState.QUEUED.value
        job.listing_done = False
        job.list_cursor = None
        job.cancel_requested = False
        job.error = None
        job.finished_at = None
        uow.commit()
    ctx.enqueue.plan_import(job_id)
    return job


def job_progress(ctx: ImportContext, job: ImportJob) -> repo.JobCounts:
    """Live counts while a job runs; the frozen ones once it has ended."""
    if JobState(job.state).is_final or job.manifest.get("options", {}).get("dry_run"):
        return repo.JobCounts(
            copied=job.copied,
            registered=job.registered,
            skipped=job.skipped,
            failed=job.failed,
            bytes_copied=job.bytes_copied,
        )
    with ctx.db.uow() as uow:
        return repo.job_counts(uow.session, job_id=job.id)


def ledger_row_public(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "remote_path": entry.remote_path,
        "size": entry.size,
        "checksum": entry.checksum,
        "label": entry.label,
        "source": entry.source_key,
    }
