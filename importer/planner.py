"""Planning a job: list the source page by page and write shards, resumably."""

from __future__ import annotations

import contextvars
import functools
import itertools
import json
import tempfile
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayport.logs import log_context
from importer import recovery
from importer.context import ImportContext, log
from importer.finish import finish_if_ready
from importer.jobs import (
    JobPlace,
    coco_file_etag,
    dataset_store,
    finish_listing,
    load_place,
    source_store,
)
from importer.object_list import object_list_problem, read_object_list
from importer.rules import (
    KeyFilter,
    NotData,
    PlannedObject,
    destination_key,
    key_problem,
    label_key_for,
    plan_page,
    remote_path,
    split_into_shards,
)
from labels.formats.coco import CocoIndex
from metadata import repository as repo
from metadata.models import (
    ImportJob,
    JobState,
    Outcome,
    Shard,
    utcnow,
)
from storage_adapters.base import ListPage, ObjectInfo, ObjectStore
from storage_adapters.errors import ErrorKind, StorageError

LABEL_CHANGED = "label_changed"
# Counted with the job's left_out: objects a sync could not compare by ETag, copied again.
COMPARED_WITHOUT_ETAG = "copied_again_without_etag"
# Noted (kind UNIMPORTED_KEY, listed at /v1/imports/{id}/unimported) and counted, not lost
# unseen: keys ending in '/' that hold data, and objects that share one label file.
UNIMPORTED_KEY = "unimported_key"
FOLDER_KEY_WITH_DATA = "folder_keys_with_data"
SHARED_LABEL = "objects_sharing_a_label_file"


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


DELETE_CANDIDATE = "delete_candidate"
REJECTED_ROW = "rejected_row"


def plan_import(ctx: ImportContext, job_id: str) -> None:
    """List the job's source page by page and write shards, enqueueing each shard's copy as
    soon as its page commits. Resumes from the stored cursor when redelivered."""
    with log_context(job_id=job_id):
        _plan_import(ctx, job_id)


def _plan_import(ctx: ImportContext, job_id: str) -> None:
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
        token = recovery.claim_planning(ctx, uow.session, job_id)
        if token is None:
            log.info("job %s: another live task is planning it: this delivery leaves", job_id)
            return
        if not resuming:
            job.state = JobState.LISTING.value
            job.started_at = job.started_at or utcnow()
        uow.commit()
    with recovery.planning_heartbeat(ctx, job_id, token):
        _list_and_shard(ctx, place, resuming=resuming)


def _list_and_shard(ctx: ImportContext, place: JobPlace, *, resuming: bool) -> None:
    """Planning proper, under the planning's lease: stops (leaving listing undone) if
    another task takes the lease over."""
    job_id = place.job.id
    if resuming:  # a redelivered plan: shards committed before the crash may not be queued
        with ctx.db.uow() as uow:
            for shard_id in repo.pending_shard_ids(uow.session, job_id=job_id):
                ctx.enqueue.copy_shard(shard_id, job_id=job_id)

    try:
        if place.job.run > 1:
            _plan_from_failures(ctx, place)
        elif place.manifest.source.object_list is not None:
            _plan_from_object_list(ctx, place)
        elif place.manifest.source.draft is not None:
            _plan_from_draft(ctx, place)
        else:
            _plan_from_listing(ctx, place)
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
    if recovery.lease_lost():  # another task took the planning over: it goes on
        return
    with ctx.db.uow() as uow:
        job = repo.lock_job(uow.session, job_id=job_id)
        if job is not None:
            finish_listing(uow.session, job)
            uow.commit()
    finish_if_ready(ctx, job_id)


def _plan_from_listing(ctx: ImportContext, place: JobPlace) -> None:
    source = source_store(ctx, place)
    manifest = place.manifest
    walk = _Walk.decode(place.job.list_cursor)
    if walk.done:
        # Redelivered after the last page committed: listing again would put every object
        # in a second shard (and note every deletion twice). Only the deletions may be left.
        _plan_deletions(ctx, place)
        return
    if walk.fresh:
        _start_listing(ctx, place, source)
    limit = min(ctx.settings.list_page_size, source.capabilities.max_list_page)
    key_filter = _key_filter(manifest)
    coco_etag = coco_file_etag(ctx, source, manifest.source.coco_file)
    spec = manifest.source
    not_data = NotData.of(
        data_prefix=spec.data_prefix,
        label_prefix=spec.label_prefix,
        label_suffix=spec.suffix,
        mask_prefix=spec.mask_prefix,
        files=(spec.coco_file,),
        own_folders=place.own_folders(_segment_names(ctx, place)),
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
            _plan_deletions(ctx, place)
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
        is_sync = repo.segment_has_entries(uow.session, segment_id=place.segment.id)
        repo.clear_job_notes(uow.session, job_id=job_id, kind=DELETE_CANDIDATE)
        repo.clear_job_notes(uow.session, job_id=job_id, kind=LABEL_CHANGED)
        repo.clear_job_notes(uow.session, job_id=job_id, kind=UNIMPORTED_KEY)
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
            job = repo.lock_job(uow.session, job_id=job_id)
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
        _note_changed_labels(ctx, place, source)


def _segment_names(ctx: ImportContext, place: JobPlace) -> list[str]:
    with ctx.db.uow() as uow:
        return repo.segment_names(uow.session, dataset_id=place.dataset.id)


def _key_filter(manifest: Any) -> KeyFilter | None:
    spec = manifest.source
    f = KeyFilter(include=spec.include, exclude=spec.exclude, modified_since=spec.modified_since)
    return None if f.is_empty else f


@dataclass(frozen=True)
class _Walk:
    """Where a listing stands: the provider's cursor, the last key planned (a sync walks
    the ledger beside the listing, in the same byte order), and whether the listing has
    kept that order (if not, comparisons look keys up one by one and nothing is deleted)."""

    cursor: str | None = None
    last: str | None = None  # remote path of the last listed object
    ordered: bool = True
    upto: str | None = None  # this page's last remote path; None on the last page
    fresh: bool = True
    done: bool = False  # the last page is planned: the listing is over

    @classmethod
    def decode(cls, raw: str | None) -> _Walk:
        if raw is None:
            return cls()
        cursor, last, ordered, *rest = json.loads(raw)
        return cls(
            cursor=cursor, last=last, ordered=ordered, fresh=False, done=bool(rest[:1] == [True])
        )

    def encode(self) -> str:
        return json.dumps([self.cursor, self.upto, self.ordered, self.done])

    def next(self) -> _Walk:
        """The walk for the page after this one."""
        return _Walk(cursor=self.cursor, last=self.upto, ordered=self.ordered, fresh=False)

    def advance(self, objects: Sequence[ObjectInfo], prefix: str, cursor: str | None) -> _Walk:
        """The walk after `objects`, a page that `cursor` resumes after."""
        rels = [remote_path(o.key, prefix) for o in objects]
        seq = ([self.last] if self.last is not None else []) + rels
        ordered = self.ordered and all(a < b for a, b in itertools.pairwise(seq))
        upto = rels[-1] if rels else self.last
        return _Walk(
            cursor=cursor,
            last=self.last,
            ordered=ordered,
            upto=upto if cursor is not None else None,
            fresh=False,
            done=cursor is None,
        )


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
        if not _write_shards(ctx, place, planned, cursor=str(last)):
            return
        after = last


def _plan_from_object_list(ctx: ImportContext, place: JobPlace) -> None:
    """Stream the object list and plan its rows page by page, like a listing. Rows carry no
    size or ETag: shards look each object up. A bad row is noted with its reason."""
    spec = place.manifest.source
    assert spec.object_list is not None
    source = source_store(ctx, place)
    done = int(place.job.list_cursor or 0)
    if done == 0:
        with ctx.db.uow() as uow:
            repo.clear_job_notes(uow.session, job_id=place.job.id, kind=REJECTED_ROW)
            uow.commit()
        if spec.coco_file is not None:
            load_coco_labels(ctx, place, source)
    page_size = ctx.settings.list_page_size
    key_filter = _key_filter(place.manifest)
    own = tuple(place.own_folders(_segment_names(ctx, place)))
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


def _plan_from_draft(ctx: ImportContext, place: JobPlace) -> None:
    """Plan the objects a TensorBay client registered (gathered into this job), page by
    page in the order they came. Their labels were stored with the job when it was made."""
    after = int(place.job.list_cursor or 0)
    page_size = ctx.settings.list_page_size
    while True:
        with ctx.db.uow() as uow:
            rows = repo.draft_objects_page(
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

    def count(s: Any, job: ImportJob) -> None:
        if rejected:
            repo.add_job_notes(s, job_id=job.id, kind=REJECTED_ROW, keys=rejected)
        job.listed += len(planned) + len(rejected)

    return _write_shards(ctx, place, planned, cursor=str(line), count=count)


def _write_page(
    ctx: ImportContext,
    place: JobPlace,
    planned: list[PlannedObject],
    *,
    listed: Sequence[ObjectInfo],
    walk: _Walk,
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

    def count(s: Any, job: ImportJob) -> None:
        nonlocal verdict
        if compare:
            verdict = _compare_with_ledger(s, place, planned, listed, walk, coco_etag)
            if verdict.gone:
                repo.add_job_notes(s, job_id=job.id, kind=DELETE_CANDIDATE, keys=verdict.gone)
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
            repo.add_job_notes(s, job_id=job.id, kind=UNIMPORTED_KEY, keys=noted)

    return _write_shards(
        ctx, place, lambda: verdict.to_copy + verdict.to_relabel, cursor=walk.encode(), count=count
    )


def add_left_out(job: ImportJob, counts: dict[str, int]) -> None:
    """Add `counts` (listed keys left out, by reason) to the job's."""
    merged = dict(job.left_out or {})
    for why, n in counts.items():
        merged[why] = merged.get(why, 0) + n
    job.left_out = merged  # a new value: the JSON column sees the change


def _write_shards(
    ctx: ImportContext,
    place: JobPlace,
    objects: list[PlannedObject] | Callable[[], list[PlannedObject]],
    *,
    cursor: str | None,
    count: Callable[[Any, ImportJob], None] | None = None,
    kind: str = "copy",
) -> bool:
    """In one transaction under the job's lock: `count` (which may decide `objects`), the
    shards of `objects` and the cursor; then enqueue the shards. False when the job was
    cancelled."""
    opts = place.manifest.options
    with ctx.db.uow() as uow:
        s = uow.session
        job = repo.lock_job(s, job_id=place.job.id)
        if job is None or job.cancel_requested or recovery.lease_lost():
            return False
        if count is not None:
            count(s, job)
        todo = objects() if callable(objects) else objects
        if kind == "copy":
            job.planned += sum(1 for o in todo if o.action == "copy")
            todo = _fail_unsafe_keys(s, place, todo)
        shard_ids = []
        if not opts.dry_run:
            for chunk in split_into_shards(
                todo, shard_size=opts.shard_size, byte_cap=ctx.settings.shard_byte_cap
            ):
                shard = Shard(
                    job_id=job.id,
                    seq=job.next_shard_seq,
                    run=job.run,
                    kind=kind,
                    items=[o.to_item() for o in chunk],
                    object_count=len(chunk),
                    byte_count=sum(o.size or 0 for o in chunk),
                )
                s.add(shard)
                job.next_shard_seq += 1
                job.shards_total += 1
                shard_ids.append((shard.id, shard.seq))
        if cursor is not None:
            job.list_cursor = cursor
        uow.commit()
    for shard_id, seq in shard_ids:
        ctx.enqueue.copy_shard(shard_id, job_id=place.job.id, seq=seq)
    return True


UNSAFE_KEY = "unsafe_key"


def _fail_unsafe_keys(s: Any, place: JobPlace, todo: list[PlannedObject]) -> list[PlannedObject]:
    """The objects of `todo` safe to copy. A source may list a key no dataset should hold
    (a '..' segment, control characters: see `key_problem`); each such object fails alone,
    its ledger row saying why, and the job goes on."""
    safe: list[PlannedObject] = []
    rows: list[dict[str, Any]] = []
    for obj in todo:
        rel = place.name_of(obj)
        problem = key_problem(rel)
        if problem is None:
            safe.append(obj)
            continue
        # The row's key columns must be storable (PostgreSQL text holds no NUL).
        shown_key = obj.key.replace("\0", "\\x00")
        rows.append(
            {
                "dataset_id": place.dataset.id,
                "segment_id": place.segment.id,
                "remote_path": rel.replace("\0", "\\x00"),
                "job_id": place.job.id,
                "source_config_id": place.source_config.id,
                "source_key": shown_key,
                "source_etag": obj.etag,
                "dest_key": place.dest_key(shown_key, name=obj.name),
                "size": obj.size or 0,
                "checksum": None,
                "verified_by": None,
                "label_key": None,
                "label_etag": None,
                "label_type": None,
                "label": None,
                "outcome": Outcome.FAILED.value,
                "attempts": 0,
                "error_code": UNSAFE_KEY,
                "error_message": f"the source key {obj.key!r} {problem}: not imported",
                "updated_at": utcnow(),
            }
        )
    if rows:
        log.warning("job %s: %d source keys refused as unsafe", place.job.id, len(rows))
        repo.upsert_ledger(s, rows=rows)
        repo.replace_label_facts(
            s, segment_id=place.segment.id, facts={r["remote_path"]: [] for r in rows}
        )
    return safe


@dataclass
class Verdict:
    """What a sync does with one listing page."""

    to_copy: list[PlannedObject] = field(default_factory=list)
    to_relabel: list[PlannedObject] = field(default_factory=list)
    unchanged: int = 0
    gone: list[str] = field(default_factory=list)  # remote paths no longer in the source
    without_etag: int = 0  # compared without an ETag on one side: copied again


def _compare_with_ledger(
    s: Any,
    place: JobPlace,
    planned: list[PlannedObject],
    listed: Sequence[ObjectInfo],
    walk: _Walk,
    coco_etag: str | None,
) -> Verdict:
    """Compare a page with the ledger, without a storage request. In order, the ledger's
    entries between the previous page's last key and this page's are walked in chunks:
    an entry of this source the page does not list is gone. Out of order, the page's keys
    are looked up one by one, and nothing is found gone."""
    spec = place.manifest.source
    prefix = spec.data_prefix
    src_id = place.source_config.id
    by_rel = {remote_path(o.key, prefix): o for o in planned}
    listed_rels = {remote_path(o.key, prefix) for o in listed}
    label_keys = [o.label_key for o in planned if o.label_key is not None]
    changed_labels = repo.notes_among(s, job_id=place.job.id, kind=LABEL_CHANGED, keys=label_keys)
    delete = place.manifest.options.delete
    verdict = Verdict()
    decided: set[str] = set()

    def judge(entry: repo.LedgerFacts) -> None:
        rel = entry.remote_path
        if (
            entry.source_config_id != src_id
            or entry.source_key != prefix + rel
            or entry.outcome not in repo.PRESENT_OUTCOMES
        ):
            return
        obj = by_rel.get(rel)
        if obj is None:
            if delete and walk.ordered and rel not in listed_rels:
                verdict.gone.append(rel)
            return
        decided.add(rel)
        if entry.source_etag is None or obj.etag is None:
            # Without an ETag on both sides, equal sizes prove nothing (None == None is no
            # comparison): the object is copied again, and the listing's lack is counted.
            verdict.to_copy.append(obj)
            verdict.without_etag += 1
        elif entry.source_etag != obj.etag or entry.size != obj.size:
            verdict.to_copy.append(obj)
        elif spec.coco_file is not None and entry.label_key in (spec.coco_file, None):
            # Labelled from the segment's COCO file: relabelled when the file changed.
            if entry.label_etag != coco_etag:
                verdict.to_relabel.append(obj.relabel())
            else:
                verdict.unchanged += 1
        elif (
            entry.label_key == obj.label_key
            or (entry.label_key is None and not entry.labelled and obj.label_key is not None)
            or (spec.mask_prefix is not None and entry.label_key == _mask_key(spec, obj.key))
        ):
            # Same label file, or none was found before: re-read it if it changed (or
            # appeared) since the ledger read it.
            if obj.label_key is not None and obj.label_key in changed_labels:
                verdict.to_relabel.append(obj.relabel())
            else:
                verdict.unchanged += 1
        else:
            verdict.to_copy.append(obj)  # paired with another label file now

    if walk.ordered:
        for entry in repo.walk_ledger(
            s, segment_id=place.segment.id, after=walk.last, upto=walk.upto
        ):
            judge(entry)
    else:
        for found in repo.ledger_entries_by_path(
            s, segment_id=place.segment.id, remote_paths=list(by_rel)
        ).values():
            judge(repo.LedgerFacts.of(found))
    verdict.to_copy.extend(o for rel, o in by_rel.items() if rel not in decided)
    return verdict


def _mask_key(spec: Any, key: str) -> str:
    """The mask file paired with `key` (the object's label file when it has no other)."""
    return label_key_for(
        key,
        data_prefix=spec.data_prefix,
        label_prefix=spec.mask_prefix,
        label_suffix=spec.mask_suffix,
    )


def _note_changed_labels(ctx: ImportContext, place: JobPlace, source: ObjectStore) -> None:
    """List the label folder beside the ledger (by label key, in order): a label file whose
    ETag differs from the one the ledger read, that is gone, or that appeared for an
    object imported without one is noted; the data listing then relabels those objects."""
    spec = place.manifest.source
    assert spec.label_prefix is not None
    src_id = place.source_config.id
    cursor: str | None = None
    last: str | None = None
    ordered = True
    total = 0
    while True:
        page = ctx.retry.call(functools.partial(source.list_page, spec.label_prefix, cursor=cursor))
        etags = {o.key: o.etag for o in page.objects if o.key.endswith(spec.suffix)}
        keys = [o.key for o in page.objects]
        seq = ([last] if last is not None else []) + keys
        ordered = ordered and all(a < b for a, b in itertools.pairwise(seq))
        upto = keys[-1] if keys and page.cursor is not None else None
        changed: list[str] = []
        seen: set[str] = set()
        with ctx.db.uow() as uow:
            s = uow.session
            entries: Iterable[repo.LedgerFacts]
            if ordered:
                entries = repo.walk_ledger(
                    s,
                    segment_id=place.segment.id,
                    after=last,
                    upto=upto,
                    by_label=True,
                    within=spec.label_prefix,
                )
            else:
                entries = map(
                    repo.LedgerFacts.of,
                    repo.ledger_entries_by_label(
                        s, segment_id=place.segment.id, label_keys=list(etags)
                    ),
                )
            for entry in entries:
                key = entry.label_key
                if key is None or entry.source_config_id != src_id:
                    continue
                if entry.outcome not in repo.PRESENT_OUTCOMES:
                    continue
                seen.add(key)
                if key in etags:
                    if etags[key] != entry.label_etag:
                        changed.append(key)
                elif ordered and (entry.label_etag is not None or entry.labelled):
                    changed.append(key)  # the label file is gone
            changed.extend(k for k in etags if k not in seen)  # new: maybe an unlabelled object
            repo.add_job_notes(s, job_id=place.job.id, kind=LABEL_CHANGED, keys=changed)
            uow.commit()
        total += len(changed)
        if page.cursor is None:
            break
        cursor, last = page.cursor, keys[-1] if keys else last
    log.info(
        "job %s: %d label files new or changed since the ledger read them", place.job.id, total
    )


def _plan_deletions(ctx: ImportContext, place: JobPlace) -> None:
    """After a complete listing: delete what is gone from the source — unless that is more
    than the job's limits allow, or the listing was empty: then nothing is deleted and the
    job is marked for review, saying why."""
    opts = place.manifest.options
    if not opts.delete:
        return
    with ctx.db.uow() as uow:
        s = uow.session
        job = repo.lock_job(s, job_id=place.job.id)
        if job is None or job.cancel_requested:
            return
        gone = repo.count_notes(s, job_id=job.id, kind=DELETE_CANDIDATE)
        held = job.review_reason
        if gone and held is None:
            total = repo.present_from_source(
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
            notes = repo.notes_after(
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
        if not _write_shards(ctx, place, doomed, cursor=None, kind="delete"):
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


def load_coco_labels(ctx: ImportContext, place: JobPlace, source: ObjectStore) -> None:
    """Read the segment's COCO file once, streamed (to a temporary file, indexed on disk),
    and store each image's label for the shard copiers. Memory stays flat in its size."""
    coco_key = place.manifest.source.coco_file
    assert coco_key is not None
    cap = ctx.settings.max_coco_size
    with tempfile.TemporaryDirectory(prefix="bayport-coco-") as tmp:
        path = Path(tmp) / "coco.json"

        def too_big(size: str) -> StorageError:
            return StorageError(
                ErrorKind.PRECONDITION_FAILED,
                f"the COCO file is {size} bytes, more than the {cap} bytes allowed "
                "(BAYPORT_MAX_COCO_SIZE): no object of the job was labelled from it",
                key=coco_key,
                transient=False,
            )

        def download() -> None:
            size = source.head(coco_key).size
            if size > cap:  # refused by its size, before reading it
                raise too_big(str(size))
            written = 0
            with path.open("wb") as out:
                for chunk in source.open(coco_key):
                    written += len(chunk)
                    if written > cap:  # the store said less than it sends
                        raise too_big(f"at least {written}")
                    out.write(chunk)

        ctx.retry.call(download)
        with ctx.db.uow() as uow:
            repo.clear_import_labels(uow.session, job_id=place.job.id)
            uow.commit()
        with CocoIndex.build(lambda: path.open("rb"), Path(tmp) / "coco.db") as index:
            batch: list[tuple[str, dict[str, Any] | None]] = []
            for name, label in index.labels():
                batch.append((name, label or None))
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
