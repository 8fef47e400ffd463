"""Copying a shard: its objects concurrently, labels read first, ledger rows in batches."""

from __future__ import annotations

import contextvars
import functools
import posixpath
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from bayport.logs import log_context
from importer import recovery
from importer.context import ImportContext, log
from importer.copier import CopyResult, checksum_of, copy_object, matches
from importer.finish import finish_if_ready
from importer.jobs import JobPlace, coco_file_etag, dataset_store, load_place, source_store
from importer.rules import (
    PlannedObject,
    destination_key,
    label_key_for,
    remote_path,
)
from labels.catalog import Catalog, label_facts, validate_label
from labels.formats.voc import parse_voc
from labels.formats.yolo import image_size, parse_yolo
from labels.parse import LabelError, parse_label, parse_label_doc
from metadata import repository as repo
from metadata.models import (
    ImportJob,
    LedgerEntry,
    Outcome,
    Shard,
    new_id,
    utcnow,
)
from storage_adapters.base import ObjectInfo, ObjectStore
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
        known = repo.ledger_entries_by_path(
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
        job = repo.lock_job(uow.session, job_id=job_id)
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
        known = repo.ledger_entries_by_path(
            s, segment_id=place.segment.id, remote_paths=(place.name_of(o) for o in items)
        )
    rows = []
    for obj in items:
        entry = known.get(place.name_of(obj))
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
    worker = _ObjectImporter(ctx, place, source, dest, known, check_dest=check_dest)
    spec = place.manifest.source
    if spec.coco_file is not None:
        worker.coco_etag = coco_file_etag(ctx, source, spec.coco_file)
    if spec.coco_file is not None or spec.draft is not None:
        # Labels kept for the job by name: read out of its COCO file, or sent by a client.
        lookup = repo.draft_labels if spec.draft is not None else repo.import_labels
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
    fn: Any,
    todo: list[PlannedObject],
    *,
    inline: bool = False,
) -> dict[str, int]:
    """Run `fn` over `todo` concurrently (or, `inline`, one after the other in this thread);
    its ledger rows are written in batches."""
    tally: dict[str, int] = {}
    batch: list[dict[str, Any]] = []
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


def _still_ours(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
            siblings = repo.present_entries_with_prefix(
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

    def delete(obj: PlannedObject) -> dict[str, Any] | None:
        entry = known.get(place.name_of(obj))
        if entry is None:  # deleted meanwhile by someone else: nothing to do
            row = _ledger_row(place, obj)
            row.update(
                outcome=Outcome.DELETED.value,
                attempts=1,
                dest_key=place.dest_key(obj.key, name=obj.name),
            )
            return row
        row = _row_from_entry(place, entry)
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
            row.update(outcome=Outcome.DELETED.value, label=None, label_type=None)
        except StorageError as exc:
            row.update(
                outcome=Outcome.FAILED.value,
                error_code=exc.kind.value,
                error_message=f"deleting {entry.dest_key} (gone from the source): {exc}",
            )
        row["attempts"] = attempts[0]
        return row

    return _run_and_record(ctx, place, delete, todo)


def _row_from_entry(place: JobPlace, entry: LedgerEntry) -> dict[str, Any]:
    """A ledger row as the entry stands, now touched by this job."""
    return {
        "dataset_id": entry.dataset_id,
        "segment_id": entry.segment_id,
        "remote_path": entry.remote_path,
        "job_id": place.job.id,
        "source_config_id": entry.source_config_id,
        "source_key": entry.source_key,
        "source_etag": entry.source_etag,
        "dest_key": entry.dest_key,
        "size": entry.size,
        "checksum": entry.checksum,
        "verified_by": entry.verified_by,
        "label_key": entry.label_key,
        "label_etag": entry.label_etag,
        "label_type": entry.label_type,
        "label": entry.label,
        "error_code": None,
        "error_message": None,
        "updated_at": utcnow(),
    }


def _write_ledger(ctx: ImportContext, rows: list[dict[str, Any]]) -> None:
    """One transaction per batch: the ledger rows and the label facts filters count."""
    if not rows:
        return
    facts: dict[str, dict[str, list[tuple[str, str | None]]]] = {}
    for row in rows:
        label = row["label"] if row["outcome"] != Outcome.FAILED.value else None
        facts.setdefault(row["segment_id"], {})[row["remote_path"]] = (
            label_facts(label) if label else []
        )
    with ctx.db.uow() as uow:
        repo.upsert_ledger(uow.session, rows=rows)
        for segment_id, by_path in facts.items():
            repo.replace_label_facts(uow.session, segment_id=segment_id, facts=by_path)
        uow.commit()


def _run_bounded(
    fn: Any, items: list[PlannedObject], concurrency: int, ctx: ImportContext, place: JobPlace
) -> Iterator[dict[str, Any] | None]:
    """Results of `fn` over `items`, at most `concurrency` in flight; stops starting new
    ones soon after the job is cancelled (checked about once a second)."""
    import time

    pending: set[Future[dict[str, Any] | None]] = set()
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


def _ledger_row(place: JobPlace, obj: PlannedObject) -> dict[str, Any]:
    """A ledger row for `obj` as this job sees it, before its outcome is known."""
    return {
        "dataset_id": place.dataset.id,
        "segment_id": place.segment.id,
        "remote_path": place.name_of(obj),
        "job_id": place.job.id,
        "source_config_id": place.source_config.id,
        "source_key": obj.key,
        "source_etag": obj.etag,
        "dest_key": place.dest_key(obj.key, name=obj.name),
        "size": obj.size or 0,
        "checksum": None,
        "verified_by": None,
        "label_key": obj.label_key,
        "label_etag": None,
        "label_type": None,
        "label": None,
        "error_code": None,
        "error_message": None,
        "updated_at": utcnow(),
    }


class _LabelProblem(Exception):
    code = "label_invalid"


class _LabelMissing(_LabelProblem):
    code = "label_missing"


class _CatalogViolation(_LabelProblem):
    code = "catalog_violation"


class _ObjectImporter:
    """Imports one object: reads and validates its label, then copies (or registers) it.
    Returns the ledger row; a failure fails this object alone, with its reason."""

    def __init__(
        self,
        ctx: ImportContext,
        place: JobPlace,
        source: ObjectStore,
        dest: ObjectStore,
        known: dict[str, LedgerEntry],
        *,
        check_dest: bool,
    ) -> None:
        self.ctx = ctx
        self.place = place
        self.source = source
        self.dest = dest
        self.known = known
        self.check_dest = check_dest
        self.limits = ctx.copy_limits
        catalog = place.dataset.catalog
        self.catalog = Catalog.model_validate(catalog) if catalog else None
        self.stored_labels: dict[str, dict[str, Any] | None] = {}
        self.coco_etag: str | None = None

    def needs_requests(self, todo: list[PlannedObject]) -> bool:
        """Would importing any of `todo` ask a store something (a label file, a mask, an
        image's size, an object's size)? Copies aside: this is asked of in-place imports."""
        spec = self.place.manifest.source
        if spec.mask_prefix is not None or spec.label_format == "yolo":
            return True
        labels_in_files = spec.coco_file is None
        return any(o.size is None or (labels_in_files and o.label_key) for o in todo)

    def run(self, obj: PlannedObject) -> dict[str, Any]:
        attempts = [1]

        def count(_exc: StorageError, _n: int) -> None:
            attempts[0] += 1

        place = self.place
        row = _ledger_row(place, obj)
        entry = self.known.get(row["remote_path"])
        try:
            if obj.action == "relabel" and entry is not None:
                # The object is as the ledger has it; only its label file changed.
                row = _row_from_entry(place, entry)
                row["label_key"], row["label"], row["label_type"] = obj.label_key, None, None
                row["label_etag"] = None
                self._label(obj, row, count)
                self._mask(obj, row, count)
                row["outcome"] = Outcome.RELABELLED.value
                row["attempts"] = attempts[0]
                return row
            self._label(obj, row, count)
            self._mask(obj, row, count)
            info = self._source_info(obj, count)
            if info.etag is None and place.manifest.options.move:
                # A move deletes the version it copied, by its ETag: one the listing lacked
                # is looked up, and the copy pinned to it.
                info = self.ctx.retry.call(lambda: self.source.head(obj.key), on_retry=count)
            row["size"], row["source_etag"] = info.size, info.etag
            outcome = self._transfer(info, row, count, entry)
            row["outcome"] = outcome.value
        except _LabelProblem as exc:
            row.update(outcome=Outcome.FAILED.value, error_code=exc.code, error_message=str(exc))
        except LabelError as exc:
            row.update(
                outcome=Outcome.FAILED.value,
                error_code="label_invalid",
                error_message=f"{obj.label_key}: {exc}" if obj.label_key else str(exc),
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
        spec = self.place.manifest.source
        if spec.coco_file is not None:
            self._coco_label(row)
            return
        if spec.draft is not None:
            self._sent_label(row)
            return
        if obj.label_key is None:
            return
        try:
            blob = self.ctx.retry.call(
                lambda: self.source.read(
                    obj.label_key or "", max_size=self.ctx.settings.max_label_size
                ),
                on_retry=count,
            )
        except StorageError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise
            if self.place.manifest.options.missing_label == "fail":
                raise _LabelMissing(f"{obj.label_key}: label file is missing") from exc
            row["label_key"] = None
            return
        raw = blob.data
        row["label_etag"] = blob.info.etag
        if spec.label_format == "voc":
            label = parse_voc(raw)
        elif spec.label_format == "yolo":
            label = parse_yolo(
                raw, classes=spec.yolo_classes or [], image_size=self._image_size(obj, count)
            )
        else:
            label = parse_label(raw, label_type=spec.label_type)
        self._keep_label(row, label, where=obj.label_key or obj.key)

    def _keep_label(self, row: dict[str, Any], label: dict[str, Any], *, where: str) -> None:
        """Check `label` against the dataset's catalog, then put it on the ledger row."""
        if self.catalog is not None:
            try:
                validate_label(label, self.catalog)
            except LabelError as exc:
                raise _CatalogViolation(f"{where}: {exc}") from exc
        row["label"] = label
        row["label_type"] = ",".join(sorted(label))

    def _mask(self, obj: PlannedObject, row: dict[str, Any], count: Any) -> None:
        """The object's mask file, paired by stem: copied beside the segment's objects (in
        `_masks/`), or registered where it is for an in-place import."""
        spec = self.place.manifest.source
        if spec.mask_prefix is None or spec.mask_type is None:
            return
        mask_key = label_key_for(
            obj.key,
            data_prefix=spec.data_prefix,
            label_prefix=spec.mask_prefix,
            label_suffix=spec.mask_suffix,
        )
        try:
            mask = self.ctx.retry.call(lambda: self.source.head(mask_key), on_retry=count)
        except StorageError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise
            if self.place.manifest.options.missing_label == "fail":
                raise _LabelMissing(f"{mask_key}: mask file is missing") from exc
            return
        in_place = self.place.in_place_key(mask_key)
        if in_place is not None:
            remote = in_place
        else:
            place = self.place
            remote = destination_key(
                place.dataset.path,
                place.segment.name,
                "_masks/" + remote_path(mask_key, spec.mask_prefix),
            )
            self._copy(mask, remote, count)
        if row["label_key"] is None:
            row["label_key"] = mask_key  # the mask is this object's label file
        label = dict(row["label"] or {})
        previous = label.get(spec.mask_type) or {}
        label[spec.mask_type] = {
            "remotePath": remote,
            **({"info": previous["info"]} if "info" in previous else {}),
        }
        row["label"] = label
        row["label_type"] = ",".join(sorted(label))

    def _coco_label(self, row: dict[str, Any]) -> None:
        """From the labels planning read out of the COCO file: None when the file does not
        list the image (missing), {} when it lists it without annotations."""
        name = row["remote_path"]
        row["label_etag"] = self.coco_etag  # the file was read, listing the image or not
        if name not in self.stored_labels:
            if self.place.manifest.options.missing_label == "fail":
                raise _LabelMissing(f"{name}: the COCO file does not list this image")
            return
        label = self.stored_labels[name] or {}
        row["label_key"] = self.place.manifest.source.coco_file
        if label:
            self._keep_label(row, label, where=name)

    def _sent_label(self, row: dict[str, Any]) -> None:
        """The label a TensorBay client sent with the object (held with it by name), checked
        as a label file's would be."""
        name = row["remote_path"]
        label = self.stored_labels.get(name)
        if not label:
            return
        try:
            parsed = parse_label_doc(label)
        except LabelError as exc:
            raise LabelError(f"the label sent for {name!r}: {exc}") from exc
        self._keep_label(row, parsed, where=name)

    def _image_size(self, obj: PlannedObject, count: Any) -> tuple[int, int] | None:
        """Width and height from the image's first bytes (YOLO boxes are relative)."""

        def head() -> bytes:
            for chunk in self.source.open(obj.key, chunk_size=64 * 1024):
                return chunk
            return b""

        size = image_size(self.ctx.retry.call(head, on_retry=count))
        if size is None:
            raise LabelError(
                f"{obj.key}: the image's width and height are not in its first 64 KiB "
                "(PNG, JPEG, GIF, BMP, WebP); YOLO's relative boxes need them"
            )
        return size

    def _source_info(self, obj: PlannedObject, count: Any) -> ObjectInfo:
        if obj.size is not None:
            return ObjectInfo(key=obj.key, size=obj.size, etag=obj.etag, md5=obj.md5)
        return self.ctx.retry.call(lambda: self.source.head(obj.key), on_retry=count)

    def _transfer(
        self, info: ObjectInfo, row: dict[str, Any], count: Any, entry: LedgerEntry | None
    ) -> Outcome:
        if self.place.registers(info.key):
            row["checksum"] = checksum_of(info)
            return Outcome.REGISTERED
        dst_key = row["dest_key"]
        if (
            entry is not None
            and self.place.manifest.options.overwrite == "skip_existing"
            and not self.place.manifest.options.move
            and entry.outcome in repo.PRESENT_OUTCOMES
            and entry.source_config_id == self.place.source_config.id
            and entry.source_key == info.key
            and entry.dest_key == dst_key
            and entry.source_etag is not None
            and entry.source_etag == info.etag
            and entry.size == info.size
        ):
            # Looked up here (an object list, a retry): the ledger has it unchanged.
            row["checksum"], row["verified_by"] = entry.checksum, entry.verified_by
            return Outcome.SKIPPED
        if self.check_dest and self.place.manifest.options.overwrite == "skip_existing":
            try:
                existing = self.ctx.retry.call(lambda: self.dest.head(dst_key), on_retry=count)
            except StorageError as exc:
                if exc.kind is not ErrorKind.NOT_FOUND:
                    raise
            else:
                if matches(existing, info):
                    row["checksum"] = checksum_of(existing)
                    self._move(info, row, count)
                    return Outcome.SKIPPED
        result = self._copy(info, dst_key, count)
        row["size"], row["checksum"] = result.size, result.checksum
        row["verified_by"] = result.verified_by
        self._move(info, row, count)
        return Outcome.COPIED

    def _copy(self, info: ObjectInfo, dst_key: str, count: Any) -> CopyResult:
        """Copy, each storage request retried alone by the policy (a large copy resumes
        part by part); a checksum mismatch gets exactly one more try of the whole copy. A
        request that exhausts its retries fails the object: repeating the whole copy would
        only meet the same fault again, and Celery redelivers shards on worker loss."""
        for last_try in (False, True):
            try:
                return copy_object(
                    self.source,
                    self.dest,
                    info,
                    dst_key,
                    self.limits,
                    retry=self.ctx.retry,
                    on_retry=count,
                )
            except StorageError as exc:
                if exc.kind is not ErrorKind.CHECKSUM_MISMATCH or last_try:
                    raise
                log.warning("job %s: %s; copying it once more", self.place.job.id, exc)
                count(exc, 0)
        raise AssertionError("unreachable")

    def _move(self, info: ObjectInfo, row: dict[str, Any], count: Any) -> None:
        """With `move`, the source object goes once its copy is verified (never before), and
        only the version copied: a source written again since it was listed stays (the
        next run copies the new version), and the row says so."""
        if not self.place.manifest.options.move:
            return
        etag = info.etag
        try:
            self.ctx.retry.call(lambda: self.source.delete(info.key, if_match=etag), on_retry=count)
        except StorageError as exc:
            if exc.kind is not ErrorKind.PRECONDITION_FAILED:
                raise
            log.warning("job %s: %s changed since listed: kept", self.place.job.id, info.key)
            row["error_code"] = "source_changed"
            row["error_message"] = (
                f"{info.key} was written again after it was listed: the listed version "
                "was copied and the source kept (the next run copies the new version)"
            )
