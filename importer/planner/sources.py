"""Planning from the sources that are not a listing: a retry's failures, an object list,
the objects a TensorBay client registered."""

from __future__ import annotations

from sqlmodel import Session

from importer.context import ImportContext, log
from importer.jobs import JobPlace, source_store
from importer.object_list import object_list_problem, read_object_list
from importer.planner.coco import load_coco_labels
from importer.planner.listing import key_filter_of, segment_names
from importer.planner.notes import REJECTED_ROW
from importer.planner.writer import write_shards
from importer.rules import PlannedObject, label_key_for, remote_path
from metadata.models import ImportJob
from metadata.queries import drafts, job_reports, notes


def plan_from_failures(ctx: ImportContext, place: JobPlace) -> None:
    after = int(place.job.list_cursor or 0)
    while True:
        with ctx.db.uow() as uow:
            rows = job_reports.failed_entries_page(
                uow.session,
                job_id=place.job.id,
                after_id=after,
                limit=place.manifest.options.shard_size,
            )
            # Sizes and ETags are looked up again: the user may have fixed the object.
            named = place.manifest.source.draft is not None
            planned = [
                PlannedObject(
                    key=r.source_key,
                    size=None,
                    etag=None,
                    md5=None,
                    label_key=r.label_key,
                    name=r.remote_path if named else None,
                )
                for r in rows
            ]
            last = rows[-1].id if rows else None
        if last is None:
            return
        if not write_shards(ctx, place, planned, cursor=str(last)):
            return
        after = last


def plan_from_object_list(ctx: ImportContext, place: JobPlace) -> None:
    """Stream the object list and plan its rows page by page, like a listing. Rows carry no
    size or ETag: shards look each object up. A bad row is noted with its reason."""
    spec = place.manifest.source
    assert spec.object_list is not None
    source = source_store(ctx, place)
    done = int(place.job.list_cursor or 0)
    if done == 0:
        with ctx.db.uow() as uow:
            notes.clear_job_notes(uow.session, job_id=place.job.id, kind=REJECTED_ROW)
            uow.commit()
        if spec.coco_file is not None:
            load_coco_labels(ctx, place, source)
    page_size = ctx.settings.list_page_size
    key_filter = key_filter_of(place.manifest)
    own = tuple(place.own_folders(segment_names(ctx, place)))
    rows = read_object_list(
        lambda: source.open(spec.object_list or ""),
        spec.list_format,
        skip=done,
        name=spec.object_list,
        max_line_bytes=ctx.settings.max_object_list_line_bytes,
        max_bytes=ctx.settings.max_object_list_bytes,
    )
    planned: list[PlannedObject] = []
    rejected: list[str] = []
    line = done
    for line, row in rows:
        if isinstance(row, str):
            rejected.append(f"line {line}: {row}")
        else:
            key, label_key = row
            problem = object_list_problem(key, spec.data_prefix, label_key=label_key)
            if problem is None and own and key.startswith(own):
                problem = "lies in a folder the dataset's copies go to: not a source object"
            if problem is not None:
                rejected.append(f"line {line}: {key!r}: {problem}")
            else:
                rel = remote_path(key, spec.data_prefix)
                if key_filter is None or key_filter.accepts(rel):
                    if label_key is None and spec.label_prefix is not None:
                        label_key = label_key_for(
                            key,
                            data_prefix=spec.data_prefix,
                            label_prefix=spec.label_prefix,
                            label_suffix=spec.suffix,
                        )
                    planned.append(
                        PlannedObject(key=key, size=None, etag=None, md5=None, label_key=label_key)
                    )
        if len(planned) + len(rejected) >= page_size:
            if not _write_list_page(ctx, place, planned, rejected, line):
                return
            planned, rejected = [], []
    _write_list_page(ctx, place, planned, rejected, line)


def plan_from_draft(ctx: ImportContext, place: JobPlace) -> None:
    """Plan the objects a TensorBay client registered (gathered into this job), page by
    page in the order they came. Their labels were stored with the job when it was made."""
    after = int(place.job.list_cursor or 0)
    page_size = ctx.settings.list_page_size
    while True:
        with ctx.db.uow() as uow:
            rows = drafts.draft_objects_page(
                uow.session, job_id=place.job.id, after_id=after, limit=page_size
            )
        if not rows:
            return
        planned: list[PlannedObject] = []
        rejected: list[str] = []
        for row_id, key, name in rows:
            problem = object_list_problem(key, "")
            if problem is not None:
                rejected.append(f"object {row_id}: cloudPath {key!r}: {problem}")
            else:
                planned.append(
                    PlannedObject(
                        key=key, size=None, etag=None, md5=None, label_key=None, name=name
                    )
                )
        after = rows[-1][0]
        if not _write_list_page(ctx, place, planned, rejected, after):
            return


def _write_list_page(
    ctx: ImportContext,
    place: JobPlace,
    planned: list[PlannedObject],
    rejected: list[str],
    line: int,
) -> bool:
    if rejected:
        log.warning("job %s: %d object-list rows refused", place.job.id, len(rejected))

    def count(s: Session, job: ImportJob) -> None:
        if rejected:
            notes.add_job_notes(s, job_id=job.id, kind=REJECTED_ROW, keys=rejected)
        job.listed += len(planned) + len(rejected)

    return write_shards(ctx, place, planned, cursor=str(line), count=count)
