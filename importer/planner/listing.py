"""Planning from a listing of the source: page by page, each compared with the ledger
(a sync) and written as shards (or, in place, registered: planner/register.py), with what
was left out counted and noted."""

from __future__ import annotations

import contextvars
import functools
import queue
import threading
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

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
from importer.planner.register import PageRegistrar
from importer.planner.sync import Verdict, compare_with_ledger, note_changed_labels
from importer.planner.walk import Walk
from importer.planner.writer import write_shards
from importer.rules import KeyFilter, NotData, PlannedObject, destination_key, plan_page
from metadata.models import ImportJob
from metadata.queries import datasets, jobs, notes
from metadata.queries import ledger as ledger_q
from storage_adapters.base import ListPage, ObjectInfo, ObjectStore

# Pages listed ahead of the planning while a COCO file loads (1 otherwise): 16 pages of
# 1,000 keys hold a few MiB.
LIST_AHEAD_PAGES = 16


def plan_from_listing(ctx: ImportContext, place: JobPlace) -> None:
    source = source_store(ctx, place)
    walk = Walk.decode(place.job.list_cursor)
    if walk.done:
        # Redelivered after the last page committed: listing again would put every object
        # in a second shard (and note every deletion twice). Only the deletions may be left.
        plan_deletions(ctx, place)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="coco") as labels_pool:
        # A COCO file is read and indexed while the first pages are listed ahead of it.
        labels_loading = _start_listing(ctx, place, source, labels_pool) if walk.fresh else None
        _plan_pages(ctx, place, source, walk, labels_loading)


def _plan_pages(
    ctx: ImportContext,
    place: JobPlace,
    source: ObjectStore,
    walk: Walk,
    labels_loading: Future[None] | None,
) -> None:
    manifest = place.manifest
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
    registrar = PageRegistrar.for_planning(ctx, place, coco_etag=coco_etag)
    # While a COCO file loads, the listing runs up to a bound of pages ahead of it.
    depth = LIST_AHEAD_PAGES if labels_loading is not None else 1
    pages = _pages_ahead(ctx, source, manifest.source.data_prefix, walk.cursor, limit, depth)
    try:
        for page in pages:
            if labels_loading is not None:
                labels_loading.result()  # the labels are stored before a page is written
                labels_loading = None
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
                registrar=registrar,
            ):
                return  # cancelled
            if page.cursor is None:
                plan_deletions(ctx, place)
                return
            walk = walk.next()
    finally:
        pages.close()


def _pages_ahead(
    ctx: ImportContext,
    source: ObjectStore,
    prefix: str,
    cursor: str | None,
    limit: int,
    depth: int,
) -> Generator[ListPage, None, None]:
    """The listing's pages in order, each from `cursor` on, listed by a thread up to
    `depth` pages ahead of the caller: the server's time on a page overlaps ours instead of
    adding to it, and memory holds at most `depth` pages beyond the caller's."""
    ahead: queue.Queue[ListPage | BaseException] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: ListPage | BaseException) -> None:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        after = cursor
        try:
            while not stop.is_set():
                page = ctx.retry.call(
                    functools.partial(source.list_page, prefix, cursor=after, limit=limit)
                )
                put(page)
                if page.cursor is None:
                    return
                after = page.cursor
        except BaseException as exc:  # handed to the caller, raised there
            put(exc)

    lister = threading.Thread(
        target=contextvars.copy_context().run, args=(produce,), name="list-ahead", daemon=True
    )
    lister.start()
    try:
        while True:
            item = ahead.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.cursor is None:
                return
    finally:
        stop.set()
        lister.join()


def _start_listing(
    ctx: ImportContext, place: JobPlace, source: ObjectStore, pool: ThreadPoolExecutor
) -> Future[None] | None:
    """Before the first page: decide whether copies must check the destination, start
    reading a COCO file in `pool` (its loading returned: pages wait for it), and (a sync)
    note the label files that changed since the ledger read them."""
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
    loading = None
    if manifest.source.coco_file is not None:
        run = contextvars.copy_context().run
        loading = pool.submit(run, load_coco_labels, ctx, place, source)
    if (
        is_sync
        and manifest.source.label_prefix is not None
        and opts.overwrite == "skip_existing"
        and not opts.move
    ):
        note_changed_labels(ctx, place, source)
    return loading


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
    registrar: PageRegistrar | None = None,
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
        ctx,
        place,
        lambda: verdict.to_copy + verdict.to_relabel,
        cursor=walk.encode(),
        count=count,
        registrar=registrar,
    )


def add_left_out(job: ImportJob, counts: dict[str, int]) -> None:
    """Add `counts` (listed keys left out, by reason) to the job's."""
    merged = dict(job.left_out or {})
    for why, n in counts.items():
        merged[why] = merged.get(why, 0) + n
    job.left_out = merged  # a new value: the JSON column sees the change
