"""Importing one object of a shard: its label read and checked, its mask, its copy (or
registration), and the ledger row that records the outcome."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from importer.context import ImportContext, log
from importer.copier import CopyResult, checksum_of, copy_object, matches
from importer.jobs import JobPlace
from importer.rules import PlannedObject, destination_key, label_key_for, remote_path
from labels.catalog import Catalog, label_facts, validate_label
from labels.formats.voc import parse_voc
from labels.formats.yolo import image_size, parse_yolo
from labels.parse import LabelError, parse_label, parse_label_doc
from metadata.models import LedgerEntry, Outcome, utcnow
from metadata.queries import labels as labels_q
from metadata.queries import ledger as ledger_q
from metadata.queries._common import PRESENT_OUTCOMES
from metadata.queries.ledger import LedgerRow
from storage_adapters.base import ObjectInfo, ObjectStore
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.retry import OnRetry


def ledger_row(place: JobPlace, obj: PlannedObject) -> LedgerRow:
    """A ledger row for `obj` as this job sees it, before its outcome is known (pending: the
    caller sets the outcome and attempts)."""
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
        "outcome": Outcome.PENDING.value,
        "attempts": 0,
        "error_code": None,
        "error_message": None,
        "updated_at": utcnow(),
    }


def row_from_entry(place: JobPlace, entry: LedgerEntry) -> LedgerRow:
    """A ledger row as the entry stands, now touched by this job (pending, as `ledger_row`'s)."""
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
        "outcome": Outcome.PENDING.value,
        "attempts": 0,
        "error_code": None,
        "error_message": None,
        "updated_at": utcnow(),
    }


def record_rows(s: Session, rows: list[LedgerRow]) -> None:
    """Write ledger rows and the label facts filters count, in the caller's transaction."""
    if not rows:
        return
    facts: dict[str, dict[str, list[tuple[str, str | None]]]] = {}
    for row in rows:
        label = row["label"] if row["outcome"] != Outcome.FAILED.value else None
        facts.setdefault(row["segment_id"], {})[row["remote_path"]] = (
            label_facts(label) if label else []
        )
    ledger_q.upsert_ledger(s, rows=rows)
    for segment_id, by_path in facts.items():
        labels_q.replace_label_facts(s, segment_id=segment_id, facts=by_path)


class _LabelProblem(Exception):
    code = "label_invalid"


class _LabelMissing(_LabelProblem):
    code = "label_missing"


class _CatalogViolation(_LabelProblem):
    code = "catalog_violation"


class ObjectImporter:
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

    def run(self, obj: PlannedObject) -> LedgerRow:
        attempts = [1]

        def count(_exc: StorageError, _n: int) -> None:
            attempts[0] += 1

        place = self.place
        row = ledger_row(place, obj)
        entry = self.known.get(row["remote_path"])
        try:
            if obj.action == "relabel" and entry is not None:
                # The object is as the ledger has it; only its label file changed.
                row = row_from_entry(place, entry)
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
            row.update(
                {"outcome": Outcome.FAILED.value, "error_code": exc.code, "error_message": str(exc)}
            )
        except LabelError as exc:
            row.update(
                {
                    "outcome": Outcome.FAILED.value,
                    "error_code": "label_invalid",
                    "error_message": f"{obj.label_key}: {exc}" if obj.label_key else str(exc),
                }
            )
        except StorageError as exc:
            row.update(
                {
                    "outcome": Outcome.FAILED.value,
                    "error_code": exc.kind.value,
                    "error_message": str(exc),
                }
            )
        except Exception as exc:  # a bug must fail this object, not the shard
            log.exception("job %s: unexpected error on %s", place.job.id, obj.key)
            row.update(
                {
                    "outcome": Outcome.FAILED.value,
                    "error_code": "internal",
                    "error_message": f"{type(exc).__name__}: {exc}",
                }
            )
        row["attempts"] = attempts[0]
        return row

    def _label(self, obj: PlannedObject, row: LedgerRow, count: OnRetry) -> None:
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

    def _keep_label(self, row: LedgerRow, label: dict[str, Any], *, where: str) -> None:
        """Check `label` against the dataset's catalog, then put it on the ledger row."""
        if self.catalog is not None:
            try:
                validate_label(label, self.catalog)
            except LabelError as exc:
                raise _CatalogViolation(f"{where}: {exc}") from exc
        row["label"] = label
        row["label_type"] = ",".join(sorted(label))

    def _mask(self, obj: PlannedObject, row: LedgerRow, count: OnRetry) -> None:
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

    def _coco_label(self, row: LedgerRow) -> None:
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

    def _sent_label(self, row: LedgerRow) -> None:
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

    def _image_size(self, obj: PlannedObject, count: OnRetry) -> tuple[int, int] | None:
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

    def _source_info(self, obj: PlannedObject, count: OnRetry) -> ObjectInfo:
        if obj.size is not None:
            return ObjectInfo(key=obj.key, size=obj.size, etag=obj.etag, md5=obj.md5)
        return self.ctx.retry.call(lambda: self.source.head(obj.key), on_retry=count)

    def _transfer(
        self, info: ObjectInfo, row: LedgerRow, count: OnRetry, entry: LedgerEntry | None
    ) -> Outcome:
        if self.place.registers(info.key):
            row["checksum"] = checksum_of(info)
            return Outcome.REGISTERED
        dst_key = row["dest_key"]
        if (
            entry is not None
            and self.place.manifest.options.overwrite == "skip_existing"
            and not self.place.manifest.options.move
            and entry.outcome in PRESENT_OUTCOMES
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

    def _copy(self, info: ObjectInfo, dst_key: str, count: OnRetry) -> CopyResult:
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

    def _move(self, info: ObjectInfo, row: LedgerRow, count: OnRetry) -> None:
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
