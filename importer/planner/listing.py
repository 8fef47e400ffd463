"""Planning from a listing of the source: page by page, each compared with the ledger
(a sync) and written as shards, with what was left out counted and noted."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor

from sqlmodel import Session

from importer.context import ImportContext
from importer.jobs import JobPlace, coco_file_etag, dataset_store, source_store
from importer.manifest import ImportManifest
from importer.planner.coco import load_coco_labels
from importer.planner.deletions import plan_deletions
from importer.planner.notes import (
    COMPARED_WITHOUT_ETAG,
    DELETE_CANDIDATE,
    FOLDER_KEY_WITH_DATA,
    LABEL_CHANGED,
    SHARED_LABEL,
    UNIMPORTED_KEY,
)
from importer.planner.sync import Verdict, compare_with_ledger, note_changed_labels
from importer.planner.walk import Walk
from importer.planner.writer import write_shards
from importer.rules import KeyFilter, NotData, PlannedObject, destination_key, plan_page
from metadata.models import ImportJob
from metadata.queries import datasets, jobs, notes
from metadata.queries import ledger as ledger_q
from storage_adapters.base import ListPage, ObjectInfo, ObjectStore


def plan_from_listing(ctx: ImportContext, place: JobPlace) -> None:
    source = source_store(ctx, place)
    manifest = place.manifest
    walk = Walk.decode(place.job.list_cursor)
    if walk.done:
        # Redelivered after the last page committed: listing again would put every object
        # in a second shard (and note every deletion twice). Only the deletions may be left.
        plan_deletions(ctx, place)
        return
    if walk.fresh:
        _start_listing(ctx, place, source)
    limit = min(ctx.settings.list_page_size, source.capabilities.max_list_page)
    key_filter = key_filter_of(manifest)
    coco_etag = coco_file_etag(ctx, source, manifest.source.coco_file)
    spec = manifest.source
    not_data = NotData.of(
        data_prefix=spec.data_prefix,
        label_prefix=spec.label_prefix,
        label_suffix=spec.suffix,
        mask_prefix=spec.mask_prefix,
        files=(spec.coco_file,),
        own_folders=place.own_folders(segment_names(ctx, place)),
    )
    pages = _pages_ahead(ctx, source, manifest.source.data_prefix, walk.cursor, limit)
    for page in pages:
        left_out: dict[str, int] = {}
        planned = plan_page(
            page.objects,
            data_prefix=spec.data_prefix,
            label_prefix=spec.label_prefix,
            label_suffix=spec.suffix,
            key_filter=key_filter,
            not_data=not_data,
            left_out=left_out,
        )
        if page.folder_keys_with_data:
            left_out[FOLDER_KEY_WITH_DATA] = len(page.folder_keys_with_data)
        walk = walk.advance(page.objects, manifest.source.data_prefix, page.cursor)
        if not _write_page(
            ctx,
            place,
            planned,
            listed=page.objects,
            walk=walk,
            coco_etag=coco_etag,
            left_out=left_out,
            folder_data=page.folder_keys_with_data,
        ):
            pages.close()
            return  # cancelled
        if page.cursor is None:
            plan_deletions(ctx, place)
            return
        walk = walk.next()


def _pages_ahead(
    ctx: ImportContext, source: ObjectStore, prefix: str, cursor: str | None, limit: int
) -> Generator[ListPage, None, None]:
    """The listing's pages in order, each from `cursor` on. The next page is asked for as
    soon as this one's cursor is known, in a thread, while the caller plans and records this
    one: the server's time on a page overlaps ours instead of adding to it."""

    def fetch(after: str | None) -> ListPage:
        return ctx.retry.call(
            functools.partial(source.list_page, prefix, cursor=after, limit=limit)
        )

    with ThreadPoolExecutor(1, thread_name_prefix="list-ahead") as ahead:
        pending = ahead.submit(contextvars.copy_context().run, fetch, cursor)
        while True:
            page = pending.result()
            if page.cursor is not None:
                pending = ahead.submit(contextvars.copy_context().run, fetch, page.cursor)
            yield page
            if page.cursor is None:
                return


def _start_listing(ctx: ImportContext, place: JobPlace, source: ObjectStore) -> None:
    """Before the first page: decide whether copies must check the destination, read a
    COCO file, and (a sync) note the label files that changed since the ledger read them."""
    manifest, opts, job_id = place.manifest, place.manifest.options, place.job.id
    with ctx.db.uow() as uow:
        is_sync = ledger_q.segment_has_entries(uow.session, segment_id=place.segment.id)
        notes.clear_job_notes(uow.session, job_id=job_id, kind=DELETE_CANDIDATE)
        notes.clear_job_notes(uow.session, job_id=job_id, kind=LABEL_CHANGED)
        notes.clear_job_notes(uow.session, job_id=job_id, kind=UNIMPORTED_KEY)
        uow.commit()
    if not place.job.in_place and not opts.dry_run:
        # The ledger is the record of what Bayport put in the segment: with entries there,
        # a sync trusts it and neither lists nor HEADs the destination.
        empty = is_sync
        if not is_sync:
            dest = dataset_store(ctx, place)
            folder = destination_key(place.dataset.path, place.segment.name, "")
            empty = not ctx.retry.call(lambda: dest.list_page(folder, limit=1)).objects
        with ctx.db.uow() as uow:
            job = jobs.lock_job(uow.session, job_id=job_id)
            if job is not None:
                job.dest_was_empty = empty
                uow.commit()
    if manifest.source.coco_file is not None:
        load_coco_labels(ctx, place, source)
    if (
        is_sync
        and manifest.source.label_prefix is not None
        and opts.overwrite == "skip_existing"
        and not opts.move
    ):
        note_changed_labels(ctx, place, source)


def segment_names(ctx: ImportContext, place: JobPlace) -> list[str]:
    with ctx.db.uow() as uow:
        return datasets.segment_names(uow.session, dataset_id=place.dataset.id)


def key_filter_of(manifest: ImportManifest) -> KeyFilter | None:
    spec = manifest.source
    f = KeyFilter(include=spec.include, exclude=spec.exclude, modified_since=spec.modified_since)
    return None if f.is_empty else f


def _shared_labels(planned: Sequence[PlannedObject]) -> list[str]:
    """Notes for the objects of a page that pair with the same label file as another
    (`a.png` and `a.jpg` both pair `a.json`): each imported with it, and said."""
    by_label: dict[str, list[str]] = {}
    for obj in planned:
        if obj.label_key is not None:
            by_label.setdefault(obj.label_key, []).append(obj.key)
    return [
        f"{key}: shares the label file {label} with {', '.join(k for k in keys if k != key)}"
        for label, keys in by_label.items()
        if len(keys) > 1
        for key in keys
    ]


def _write_page(
    ctx: ImportContext,
    place: JobPlace,
    planned: list[PlannedObject],
    *,
    listed: Sequence[ObjectInfo],
    walk: Walk,
    coco_etag: str | None = None,
    left_out: dict[str, int] | None = None,
    folder_data: Sequence[str] = (),
) -> bool:
    """Compare one listing page with the ledger (skip what it holds unchanged, relabel
    what only changed its label, note what is gone) and write the rest as shards, with the
    counts and the cursor, in one transaction. False when the job was cancelled."""
    opts = place.manifest.options
    compare = opts.overwrite == "skip_existing" and not opts.move
    verdict = Verdict(to_copy=planned)
    folder_keys = [f"{k}: a folder key holding data, not imported" for k in folder_data]
    shared = _shared_labels(planned)
    if shared and left_out is not None:
        left_out[SHARED_LABEL] = len(shared)

    def count(s: Session, job: ImportJob) -> None:
        nonlocal verdict
        if compare:
            verdict = compare_with_ledger(s, place, planned, listed, walk, coco_etag)
            if verdict.gone:
                notes.add_job_notes(s, job_id=job.id, kind=DELETE_CANDIDATE, keys=verdict.gone)
                job.delete_planned += len(verdict.gone)
            if not walk.ordered and opts.delete and job.review_reason is None:
                job.review_reason = (
                    "the source listing did not come in key order, so objects gone from it "
                    "cannot be told safely: nothing was deleted"
                )
        job.unchanged += verdict.unchanged
        if verdict.without_etag:
            add_left_out(job, {COMPARED_WITHOUT_ETAG: verdict.without_etag})
        job.relabel_planned += len(verdict.to_relabel)
        job.listed += len(listed)
        job.bytes_listed += sum(o.size for o in listed)
        if left_out:
            add_left_out(job, left_out)
        noted = [*folder_keys, *shared]
        if noted:
            notes.add_job_notes(s, job_id=job.id, kind=UNIMPORTED_KEY, keys=noted)

    return write_shards(
        ctx, place, lambda: verdict.to_copy + verdict.to_relabel, cursor=walk.encode(), count=count
    )


def add_left_out(job: ImportJob, counts: dict[str, int]) -> None:
    """Add `counts` (listed keys left out, by reason) to the job's."""
    merged = dict(job.left_out or {})
    for why, n in counts.items():
        merged[why] = merged.get(why, 0) + n
    job.left_out = merged  # a new value: the JSON column sees the change
