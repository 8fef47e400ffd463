"""Copying a shard: its objects concurrently (each by `object_import`), ledger rows in batches."""

from __future__ import annotations

import contextvars
import functools
import posixpath
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from bayport.logs import log_context
from importer import recovery
from importer.context import ImportContext, log
from importer.finish import finish_if_ready
from importer.jobs import JobPlace, coco_file_etag, dataset_store, load_place, source_store
from importer.object_import import ObjectImporter, ledger_row, record_rows, row_from_entry
from importer.rules import PlannedObject, destination_key
from metadata.models import ImportJob, LedgerEntry, Outcome, Shard, new_id, utcnow
from metadata.queries import drafts, jobs
from metadata.queries import labels as labels_q
from metadata.queries import ledger as ledger_q
from metadata.queries.ledger import LedgerRow
from storage_adapters.errors import ErrorKind, StorageError

# --- copy a shard ---------------------------------------------------------------------


@dataclass(frozen=True)
class ShardResult:
    copied: int = 0
    registered: int = 0
    skipped: int = 0
    failed: int = 0
    relabelled: int = 0
    deleted: int = 0
    # Another live task holds the shard (a duplicate delivery): this one did nothing.
    held_elsewhere: bool = False

    def __str__(self) -> str:
        if self.held_elsewhere:
            return "another task is copying this shard: left to it"
        if self.deleted:
            return f"deleted {self.deleted}, failed {self.failed}"
        moved = f"registered {self.registered}" if self.registered else f"copied {self.copied}"
        extra = f", relabelled {self.relabelled}" if self.relabelled else ""
        return f"{moved}{extra}, skipped {self.skipped}, failed {self.failed}"


def copy_shard(ctx: ImportContext, shard_id: str, *, lease_owner: str | None = None) -> ShardResult:
    """Copy (or register) a shard's objects with `concurrency` threads, writing ledger rows
    in batches. Idempotent: objects this job already finished are not redone. The copy
    holds the shard's lease for `lease_owner` (the task's id: a redelivery of the same
    message takes it over); a delivery that finds another live task holding it leaves."""
    with ctx.db.uow() as uow:
        shard = uow.session.get(Shard, shard_id)
        job_id = shard.job_id if shard is not None else None
        done = shard is None or shard.done
    with log_context(job_id=job_id, shard_id=shard_id):
        if done:
            return _copy_shard(ctx, shard_id)
        owner = lease_owner or new_id()
        if not recovery.claim_shard(ctx, shard_id, owner):
            log.info("shard %s is held by another live task: this delivery leaves it", shard_id)
            return ShardResult(held_elsewhere=True)
        try:
            with recovery.shard_heartbeat(ctx, shard_id, owner):
                return _copy_shard(ctx, shard_id)
        finally:
            recovery.release_shard(ctx, shard_id, owner)


def _copy_shard(ctx: ImportContext, shard_id: str) -> ShardResult:
    with ctx.db.uow() as uow:
        s = uow.session
        shard = s.get(Shard, shard_id)
        if shard is None:
            return ShardResult()
        finished_job = shard.job_id if shard.done else None
    if finished_job is not None:
        # Redelivered: only the job's finishing may be left. Outside the unit of work above:
        # on SQLite its read transaction would keep the finishing's writes waiting.
        finish_if_ready(ctx, finished_job)
        return ShardResult()
    with ctx.db.uow() as uow:
        s = uow.session
        shard = s.get(Shard, shard_id)
        if shard is None or shard.done:
            return ShardResult()
        job = s.get(ImportJob, shard.job_id)
        if job is None:
            return ShardResult()
        place = load_place(s, job)
        items = [PlannedObject.from_item(i) for i in shard.items]
        known = ledger_q.ledger_entries_by_path(
            s,
            segment_id=place.segment.id,
            remote_paths=(place.name_of(o) for o in items),
        )
        finished = {
            path
            for path, entry in known.items()
            if entry.job_id == job.id and entry.outcome != Outcome.FAILED.value
        }
        cancelled = job.cancel_requested
        kind = shard.kind
    todo = [o for o in items if place.name_of(o) not in finished]
    tally: dict[str, int] = {}
    if not cancelled and todo:
        if kind == "delete":
            tally = _delete_objects(ctx, place, todo, known)
        else:
            tally = _copy_objects(
                ctx,
                place,
                todo,
                known,
                check_dest=not place.job.dest_was_empty or shard.run > 1,
            )
    if recovery.lease_lost():  # another task took the shard over: it completes it
        return ShardResult(held_elsewhere=True)
    _complete_shard(ctx, job_id=place.job.id, shard_id=shard_id)
    return ShardResult(
        copied=tally.get(Outcome.COPIED, 0),
        registered=tally.get(Outcome.REGISTERED, 0),
        skipped=tally.get(Outcome.SKIPPED, 0),
        failed=tally.get(Outcome.FAILED, 0),
        relabelled=tally.get(Outcome.RELABELLED, 0),
        deleted=tally.get(Outcome.DELETED, 0),
    )


def _complete_shard(ctx: ImportContext, *, job_id: str, shard_id: str) -> None:
    with ctx.db.uow() as uow:
        job = jobs.lock_job(uow.session, job_id=job_id)
        shard = uow.session.get(Shard, shard_id)
        if job is None or shard is None or shard.done:
            return
        shard.done = True
        shard.finished_at = utcnow()
        uow.commit()
    finish_if_ready(ctx, job_id)


def abandon_shard(ctx: ImportContext, shard_id: str, reason: str) -> None:
    """A shard whose task failed for good (not an object's fault: every object failure is
    caught): its unfinished objects fail with `reason`, so the job can still end."""
    with ctx.db.uow() as uow:
        s = uow.session
        shard = s.get(Shard, shard_id)
        job = s.get(ImportJob, shard.job_id) if shard else None
        if shard is None or job is None or shard.done:
            return
        place = load_place(s, job)
        items = [PlannedObject.from_item(i) for i in shard.items]
        known = ledger_q.ledger_entries_by_path(
            s, segment_id=place.segment.id, remote_paths=(place.name_of(o) for o in items)
        )
    rows: list[LedgerRow] = []
    for obj in items:
        entry = known.get(place.name_of(obj))
        if entry is None or entry.job_id != job.id or entry.outcome == Outcome.FAILED.value:
            row = ledger_row(place, obj)
            row.update(
                {
                    "outcome": Outcome.FAILED.value,
                    "error_code": "internal",
                    "error_message": reason,
                    "attempts": 1,
                }
            )
            rows.append(row)
    _write_ledger(ctx, rows)
    _complete_shard(ctx, job_id=job.id, shard_id=shard_id)


def _copy_objects(
    ctx: ImportContext,
    place: JobPlace,
    todo: list[PlannedObject],
    known: dict[str, LedgerEntry],
    *,
    check_dest: bool,
) -> dict[str, int]:
    source = source_store(ctx, place)
    dest = dataset_store(ctx, place)  # in place: only a mask outside the dataset is copied
    worker = ObjectImporter(ctx, place, source, dest, known, check_dest=check_dest)
    spec = place.manifest.source
    if spec.coco_file is not None:
        worker.coco_etag = coco_file_etag(ctx, source, spec.coco_file)
    if spec.coco_file is not None or spec.draft is not None:
        # Labels kept for the job by name: read out of its COCO file, or sent by a client.
        lookup = drafts.draft_labels if spec.draft is not None else labels_q.import_labels
        with ctx.db.uow() as uow:
            worker.stored_labels = lookup(
                uow.session, job_id=place.job.id, names=[place.name_of(o) for o in todo]
            )
    # An in-place import that needs no request per object (no label file to read, no mask
    # to look up, sizes from the listing) is bookkeeping only: threads would add nothing but
    # their own cost, so it runs in this one.
    inline = place.job.in_place and not worker.needs_requests(todo)
    return _run_and_record(ctx, place, worker.run, todo, inline=inline)


def _run_and_record(
    ctx: ImportContext,
    place: JobPlace,
    fn: Callable[[PlannedObject], LedgerRow | None],
    todo: list[PlannedObject],
    *,
    inline: bool = False,
) -> dict[str, int]:
    """Run `fn` over `todo` concurrently (or, `inline`, one after the other in this thread);
    its ledger rows are written in batches."""
    tally: dict[str, int] = {}
    batch: list[LedgerRow] = []
    rows = (
        map(fn, todo)
        if inline
        else _run_bounded(fn, todo, place.manifest.options.concurrency, ctx, place)
    )
    # Inline work is quick: the shard's rows go in one transaction (fewer commits, and less
    # time other processes wait for SQLite's write lock).
    batch_size = len(todo) if inline else ctx.settings.ledger_batch_size
    for row in rows:
        if row is None:  # nothing to record
            continue
        batch.append(row)
        tally[row["outcome"]] = tally.get(row["outcome"], 0) + 1
        if len(batch) >= batch_size:
            _write_ledger(ctx, _still_ours(batch))
            batch = []
    _write_ledger(ctx, _still_ours(batch))
    return tally


def _still_ours(rows: list[LedgerRow]) -> list[LedgerRow]:
    """The rows to record. Once another task took the shard over, this one's failures are
    left out: two tasks on one object may fail each other, and the new holder decides the
    object (a success is a fact either way)."""
    if not recovery.lease_lost():
        return rows
    return [row for row in rows if row["outcome"] != Outcome.FAILED.value]


def _delete_objects(
    ctx: ImportContext,
    place: JobPlace,
    todo: list[PlannedObject],
    known: dict[str, LedgerEntry],
) -> dict[str, int]:
    """A sync's deletions: each object gone from the source is deleted from the dataset (an
    in-place import's objects are already gone) with its copied mask, and its ledger entry
    becomes a tombstone. A failed delete fails that object alone, with its reason."""
    source = source_store(ctx, place)
    dest = None if place.job.in_place else dataset_store(ctx, place)
    masks = "_masks/"

    def still_there(key: str) -> bool:
        try:
            ctx.retry.call(lambda: source.head(key))
        except StorageError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                return False
            raise
        return True

    doomed = {place.name_of(o) for o in todo}

    def mask_shared(remote_path: str, mask_path: str) -> bool:
        """Does another object the segment keeps use this mask? Masks pair by stem, so
        `a.png` and `a.jpg` share `_masks/a.png`: it goes with the last of them only."""
        folder, name = posixpath.split(remote_path)
        stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
        with ctx.db.uow() as uow:
            siblings = ledger_q.present_entries_with_prefix(
                uow.session,
                segment_id=place.segment.id,
                prefix=posixpath.join(folder, stem) + ".",
            )
        for sibling in siblings:
            if sibling.remote_path in (remote_path, *doomed):
                continue
            for value in (sibling.label or {}).values():
                if isinstance(value, dict) and value.get("remotePath") == mask_path:
                    return True
        return False

    def delete(obj: PlannedObject) -> LedgerRow | None:
        entry = known.get(place.name_of(obj))
        if entry is None:  # deleted meanwhile by someone else: nothing to do
            row = ledger_row(place, obj)
            row.update(
                {
                    "outcome": Outcome.DELETED.value,
                    "attempts": 1,
                    "dest_key": place.dest_key(obj.key, name=obj.name),
                }
            )
            return row
        row = row_from_entry(place, entry)
        attempts = [1]

        def count(_exc: StorageError, _n: int) -> None:
            attempts[0] += 1

        try:
            # Deleting cannot be undone: one HEAD makes sure the object is really gone
            # (it may have come back since the listing).
            if still_there(entry.source_key):
                log.warning("job %s: %s is back in the source: kept", place.job.id, obj.key)
                return None
            if dest is not None and not place.registers(entry.source_key):
                ctx.retry.call(lambda: dest.delete(entry.dest_key), on_retry=count)
                for value in (entry.label or {}).values():
                    path = value.get("remotePath") if isinstance(value, dict) else None
                    folder = destination_key(place.dataset.path, place.segment.name, masks)
                    if (
                        isinstance(path, str)
                        and path.startswith(folder)
                        and not mask_shared(entry.remote_path, path)
                    ):
                        ctx.retry.call(functools.partial(dest.delete, path), on_retry=count)
            row.update({"outcome": Outcome.DELETED.value, "label": None, "label_type": None})
        except StorageError as exc:
            row.update(
                {
                    "outcome": Outcome.FAILED.value,
                    "error_code": exc.kind.value,
                    "error_message": f"deleting {entry.dest_key} (gone from the source): {exc}",
                }
            )
        row["attempts"] = attempts[0]
        return row

    return _run_and_record(ctx, place, delete, todo)


def _write_ledger(ctx: ImportContext, rows: list[LedgerRow]) -> None:
    """One transaction per batch: the ledger rows and the label facts filters count."""
    if not rows:
        return
    with ctx.db.uow() as uow:
        record_rows(uow.session, rows)
        uow.commit()


def _run_bounded(
    fn: Callable[[PlannedObject], LedgerRow | None],
    items: list[PlannedObject],
    concurrency: int,
    ctx: ImportContext,
    place: JobPlace,
) -> Iterator[LedgerRow | None]:
    """Results of `fn` over `items`, at most `concurrency` in flight; stops starting new
    ones soon after the job is cancelled (checked about once a second)."""
    import time

    pending: set[Future[LedgerRow | None]] = set()
    it = iter(items)
    next_check = time.monotonic() + 1.0
    stopped = False
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="copy") as pool:
        while True:
            while not stopped and len(pending) < concurrency:
                obj = None if recovery.lease_lost() else next(it, None)
                if obj is None:  # all started, or the shard's lease taken over
                    stopped = True
                    break
                # Each copy thread logs with the shard's job and shard ids.
                pending.add(pool.submit(contextvars.copy_context().run, fn, obj))
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
