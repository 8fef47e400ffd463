"""Registering a page of an in-place import where it is planned: when none of its objects
needs a request (sizes and ETags from the listing, labels from the COCO file or none), a
shard would only carry the page to another task to write the same ledger rows. The page's
rows are written in the page's own transaction instead, with its counts and cursor."""

from __future__ import annotations

from sqlmodel import Session

from importer.context import ImportContext
from importer.jobs import JobPlace, dataset_store, source_store
from importer.object_import import ObjectImporter, record_rows
from importer.rules import PlannedObject
from metadata.models import Outcome
from metadata.queries import labels as labels_q
from metadata.queries import ledger as ledger_q


class PageRegistrar:
    """Registers the pages of one planning of an in-place import (built once per planning:
    the stores and the COCO file's ETag are looked up once)."""

    def __init__(self, ctx: ImportContext, place: JobPlace, *, coco_etag: str | None) -> None:
        self.ctx = ctx
        self.place = place
        self._importer = ObjectImporter(
            ctx,
            place,
            source_store(ctx, place),
            dataset_store(ctx, place),
            {},
            check_dest=False,  # nothing is copied: every object registers where it is
        )
        self._importer.coco_etag = coco_etag

    @classmethod
    def for_planning(
        cls, ctx: ImportContext, place: JobPlace, *, coco_etag: str | None
    ) -> PageRegistrar | None:
        """A registrar for an in-place import's planning, or None when its pages go in shards
        (a copy, a dry run, a draft's labels)."""
        spec, opts = place.manifest.source, place.manifest.options
        if not place.job.in_place or opts.dry_run or opts.move or spec.draft is not None:
            return None
        return cls(ctx, place, coco_etag=coco_etag)

    def register(self, s: Session, todo: list[PlannedObject]) -> bool:
        """Register `todo` in `s` (the page's transaction), each object's ledger row as its
        shard would have written it (a bad label fails that object alone). False, writing
        nothing, when an object needs a request: then the page goes in shards."""
        worker = self._importer
        if not todo:
            return True
        if any(o.action != "copy" for o in todo) or worker.needs_requests(todo):
            return False
        place = self.place
        names = [place.name_of(o) for o in todo]
        worker.known = ledger_q.ledger_entries_by_path(
            s, segment_id=place.segment.id, remote_paths=names
        )
        # As in a shard: what this job already settled is left as it is.
        done = {
            path
            for path, entry in worker.known.items()
            if entry.job_id == place.job.id and entry.outcome != Outcome.FAILED.value
        }
        if place.manifest.source.coco_file is not None:
            worker.stored_labels = labels_q.import_labels(s, job_id=place.job.id, names=names)
        rows = [worker.run(o) for o, name in zip(todo, names, strict=True) if name not in done]
        record_rows(s, rows)
        return True
