"""Import jobs: submit, where a job reads and writes, finalize, cancel, retry, progress."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from importer.context import ImportContext, log
from importer.errors import Conflict, Invalid, NotFound
from importer.locations import Bucket, Place, config_root, folder_of, is_in_place
from importer.manifest import ImportManifest
from importer.rules import (
    DATASET_OUTPUT,
    FILTERED,
    LABEL_FILE,
    MASK_FILE,
    PlannedObject,
    destination_key,
    remote_path,
)
from metadata.models import (
    Dataset,
    ImportJob,
    JobState,
    LedgerEntry,
    Segment,
    StorageConfig,
    utcnow,
)
from metadata.queries import datasets, storage_configs
from metadata.queries import jobs as jobs_q
from metadata.queries import ledger as ledger_q
from storage_adapters.base import ObjectStore
from storage_adapters.errors import StorageError

# --- submit ---------------------------------------------------------------------------


def submit_import(
    ctx: ImportContext,
    *,
    workspace_id: str,
    manifest: ImportManifest,
    schedule_id: str | None = None,
) -> ImportJob:
    """Record a job for `manifest` and enqueue its planning (after the commit). A job a
    schedule starts carries its `schedule_id`."""
    return submit(ctx, workspace_id=workspace_id, manifest=manifest, schedule_id=schedule_id).job


@dataclass(frozen=True)
class Submitted:
    job: ImportJob
    # The job an earlier submission with the same idempotency key made: nothing new.
    replayed: bool = False


def request_hash(manifest: ImportManifest) -> str:
    """The manifest's fingerprint (as validated: spacing and key order do not count)."""
    canonical = json.dumps(manifest.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit(
    ctx: ImportContext,
    *,
    workspace_id: str,
    manifest: ImportManifest,
    schedule_id: str | None = None,
    idempotency_key: str | None = None,
    before_commit: Callable[[Session, ImportJob], None] | None = None,
) -> Submitted:
    """`submit_import`, once per idempotency key: a submission repeated with the key of an
    earlier one (a client retrying after a timeout, or an API restart) gets the earlier
    job back, replayed, and makes no new one; the same key with another manifest is
    refused. Keys are unique per workspace in the DB, so concurrent duplicates make one
    job too: the loser of the race finds the winner's. `before_commit` is called with the
    session and the new job before the job commits: what it writes commits with the job."""
    digest = request_hash(manifest) if idempotency_key is not None else None
    args = (ctx, workspace_id, manifest, schedule_id, idempotency_key, digest, before_commit)
    try:
        return _submit(*args)
    except IntegrityError:
        # A concurrent submission committed first (the same key, or a new segment's
        # name): decided again, against what it wrote.
        return _submit(*args)


def _replay(job: ImportJob, key: str, digest: str | None) -> Submitted:
    if job.request_hash != digest:
        raise Invalid(
            f"Idempotency-Key {key!r} was already used for another request (import job "
            f"{job.id}, a different manifest): use a new key for a new import",
            field="Idempotency-Key",
        )
    return Submitted(job, replayed=True)


def _submit(
    ctx: ImportContext,
    workspace_id: str,
    manifest: ImportManifest,
    schedule_id: str | None,
    idempotency_key: str | None,
    digest: str | None,
    before_commit: Callable[[Session, ImportJob], None] | None = None,
) -> Submitted:
    with ctx.db.uow() as uow:
        s = uow.session
        if idempotency_key is not None:
            earlier = s.exec(
                select(ImportJob).where(
                    ImportJob.workspace_id == workspace_id,
                    ImportJob.idempotency_key == idempotency_key,
                )
            ).first()
            if earlier is not None:
                return _replay(earlier, idempotency_key, digest)
        dataset = datasets.get_dataset(s, workspace_id=workspace_id, name=manifest.dataset)
        if dataset is None:
            raise NotFound(f"dataset {manifest.dataset!r} does not exist", field="dataset")
        config = storage_configs.get_config(
            s, workspace_id=workspace_id, name=manifest.source.config_name
        )
        if config is None:
            raise NotFound(
                f"storage config {manifest.source.config_name!r} does not exist",
                field="source.config_name",
            )
        segment = datasets.get_or_create_segment(s, dataset_id=dataset.id, name=manifest.segment)
        # One import at a time per segment: the ledger row of an object says which job last
        # touched it, and two jobs racing on one segment would take each other's objects.
        running = datasets.running_job_on_segment(s, segment_id=segment.id)
        if (
            running is not None
            and idempotency_key is not None
            and running.idempotency_key == idempotency_key
        ):
            return _replay(running, idempotency_key, digest)  # it committed while we waited
        if running is not None:
            raise Conflict(
                f"import job {running.id} is still {running.state} on segment "
                f"{manifest.segment!r} of {manifest.dataset!r}: wait for it or cancel it",
                field="segment",
            )
        dataset_config = s.get(StorageConfig, dataset.config_id) if dataset.config_id else None
        # A draft's objects are placed one by one (JobPlace.registers): each where it is
        # when it lies inside the dataset's storage path, else copied into it.
        in_place = manifest.source.draft is None and is_in_place(
            config, manifest.source.data_prefix, dataset_config, dataset.path
        )
        if in_place and manifest.options.move:
            raise Invalid(
                "options.move deletes the source after copying, but this import is in place "
                "(the source folder lies inside the dataset): nothing would be copied",
                field="options.move",
            )
        job = ImportJob(
            workspace_id=workspace_id,
            dataset_id=dataset.id,
            segment_id=segment.id,
            source_config_id=config.id,
            manifest=manifest.model_dump(mode="json"),
            in_place=in_place,
            schedule_id=schedule_id,
            idempotency_key=idempotency_key,
            request_hash=digest,
        )
        s.add(job)
        if before_commit is not None:
            s.flush()
            before_commit(s, job)
        uow.commit()
    ctx.enqueue.plan_import(job.id)
    return Submitted(job)


@dataclass(frozen=True)
class JobPlace:
    """What planning and copying need to know about a job's source and destination."""

    job: ImportJob
    manifest: ImportManifest
    dataset: Dataset
    segment: Segment
    source_config: StorageConfig
    dataset_config: StorageConfig | None

    def name_of(self, obj: PlannedObject) -> str:
        return self._name(obj.key, obj.name)

    @property
    def bucket_keys(self) -> bool:
        """Are the job's source keys bucket keys (a TensorBay client's cloud paths) rather
        than keys relative to the source config's file_path?"""
        return self.manifest.source.draft is not None

    def in_place_key(self, key: str) -> str | None:
        """The source object `key` as a key of the dataset's storage config, when it lies
        inside the dataset's storage path (same bucket, by location); else None."""
        bucket_key = self._source_root + key
        where = self._dataset_folder
        if where is None or not where.holds_key(self._source_bucket, bucket_key):
            return None
        return bucket_key[len(self._dataset_root) :]

    def registers(self, key: str) -> bool:
        """Is the object registered where it is, not copied? Every object of an in-place
        job is; of another job, the objects that already lie inside the dataset's storage
        path (a TensorBay client's cloud paths, a source folder wider than the dataset's)."""
        return self.job.in_place or self.in_place_key(key) is not None

    def dest_key(self, key: str, *, name: str | None = None) -> str:
        """The object's key in the dataset's storage: where it is (in place), or where its
        copy lands, `<dataset path><segment>/<name>`."""
        if self.registers(key):
            return self.in_place_key(key) or key
        return destination_key(self.dataset.path, self.segment.name, self._name(key, name))

    def own_folders(self, segments: Iterable[str]) -> list[str]:
        """The folders a copying import writes to (the dataset's segment folders, given the
        names of its segments), as source key prefixes, where the source folder holds them
        (a dataset below its data prefix): what imports wrote there is the dataset's own
        output, never listed as source (each run would import the last one's copies one
        level deeper)."""
        if self.job.in_place or self._dataset_folder is None or self.bucket_keys:
            return []
        source = folder_of(self.source_config, self.manifest.source.data_prefix)
        folders = []
        for name in segments:
            out = Place(
                self._dataset_folder.bucket, destination_key(self._dataset_folder.prefix, name, "")
            )
            if source.contains(out):
                folders.append(out.prefix[len(self._source_root) :])
        return folders

    @functools.cached_property
    def _source_root(self) -> str:
        return "" if self.bucket_keys else config_root(self.source_config)

    @functools.cached_property
    def _source_bucket(self) -> Bucket:
        return Bucket.of(self.source_config)

    @functools.cached_property
    def _dataset_root(self) -> str:
        return config_root(self.dataset_config) if self.dataset_config else ""

    @functools.cached_property
    def _dataset_folder(self) -> Place | None:
        if self.dataset_config is None:
            return None
        return folder_of(self.dataset_config, self.dataset.path)

    def _name(self, key: str, name: str | None) -> str:
        """A path in the segment: the name a client gave the object, else its key below
        the data prefix."""
        return name if name is not None else remote_path(key, self.manifest.source.data_prefix)


def load_place(s: Session, job: ImportJob) -> JobPlace:
    dataset = s.get(Dataset, job.dataset_id)
    segment = s.get(Segment, job.segment_id)
    source_config = s.get(StorageConfig, job.source_config_id)
    if dataset is None or segment is None or source_config is None:
        raise Invalid(f"job {job.id} refers to a deleted dataset, segment or storage config")
    dataset_config = s.get(StorageConfig, dataset.config_id) if dataset.config_id else None
    return JobPlace(
        job=job,
        manifest=ImportManifest.model_validate(job.manifest),
        dataset=dataset,
        segment=segment,
        source_config=source_config,
        dataset_config=dataset_config,
    )


def source_store(ctx: ImportContext, place: JobPlace) -> ObjectStore:
    """Where the job reads, under the job's caps (at the bucket's root for a job whose keys
    are bucket keys)."""
    store = ctx.stores.for_config(place.source_config, at_bucket_root=place.bucket_keys)
    return _job_capped(ctx, place, store)


def dataset_store(ctx: ImportContext, place: JobPlace) -> ObjectStore:
    """Where the job writes, under the job's caps."""
    if place.dataset_config is None:
        return _job_capped(ctx, place, ctx.stores.default_storage())
    return _job_capped(ctx, place, ctx.stores.for_config(place.dataset_config))


def _job_capped(ctx: ImportContext, place: JobPlace, store: ObjectStore) -> ObjectStore:
    # Every store a job's tasks use comes through here: one scope per job, so the caps hold
    # for the source and the destination together, in every worker.
    opts = place.manifest.options
    if opts.max_requests_per_second is None and opts.max_bytes_per_second is None:
        return store
    return ctx.caps.cap(
        store,
        scope=f"job:{place.job.id}",
        requests_per_second=opts.max_requests_per_second,
        bytes_per_second=opts.max_bytes_per_second,
    )


def coco_file_etag(ctx: ImportContext, source: ObjectStore, coco_file: str | None) -> str | None:
    """The COCO file's ETag (its objects are relabelled when it changes)."""
    if coco_file is None:
        return None
    try:
        return ctx.retry.call(lambda: source.head(coco_file)).etag
    except StorageError:
        return None  # read (and failed, with the reason) when the labels are loaded


def finish_listing(s: Session, job: ImportJob) -> None:
    """Listing is over (done, failed or cancelled); the caller runs `finish_if_ready` after
    its commit."""
    job.listing_done = True
    if job.state in (JobState.QUEUED, JobState.LISTING):
        job.state = JobState.COPYING.value


def finalize_job(s: Session, job: ImportJob) -> None:
    """Freeze the counts and set the final state. Runs once: under the job's row lock, by
    whichever of listing or the last shard finishes last."""
    if JobState(job.state).is_final:
        return
    if job.manifest.get("options", {}).get("dry_run"):
        job.skipped = job.unchanged
    else:
        counts = ledger_q.job_counts(s, job_id=job.id)
        job.copied, job.registered = counts.copied, counts.registered
        job.skipped, job.failed = counts.skipped + job.unchanged, counts.failed
        job.relabelled, job.deleted = counts.relabelled, counts.deleted
        job.bytes_copied = counts.bytes_copied
        source = job.manifest.get("source", {})
        if any(source.get(k) is not None for k in ("label_prefix", "coco_file", "mask_prefix")):
            job.unlabelled = ledger_q.count_unlabelled(s, job_id=job.id)
    nothing, job.notice = left_out_notice(job)
    if nothing and job.error is None and not job.cancel_requested:
        job.error = job.notice  # listed N, planned 0, and not by the user's own filters
    done = job.copied + job.registered + job.skipped + job.relabelled + job.deleted
    if job.cancel_requested:
        state = JobState.CANCELLED
    elif job.error is not None or (job.failed and not done):
        state = JobState.FAILED
    elif job.review_reason is not None:
        state = JobState.NEEDS_REVIEW  # copies done; deletions held back (see the reason)
    elif job.failed:
        state = JobState.PARTIALLY_FAILED
    else:
        state = JobState.SUCCEEDED
    job.state = state.value
    job.finished_at = utcnow()
    log.info(
        "job %s %s: copied %d, registered %d, skipped %d, relabelled %d, deleted %d, failed %d",
        job.id,
        state.value,
        job.copied,
        job.registered,
        job.skipped,
        job.relabelled,
        job.deleted,
        job.failed,
    )


# Counted with left_out, but said apart: not keys left out of the listing.
_NOTED = frozenset({"copied_again_without_etag", "objects_sharing_a_label_file"})
_LEFT_OUT_WORDS = {
    "folder_keys_with_data": "keys ending in '/' that hold data (a folder key is no object: "
    "listed at /v1/imports/{id}/unimported)",
    "objects_sharing_a_label_file": "objects share a label file with another (each imported "
    "with it: listed at /v1/imports/{id}/unimported)",
    LABEL_FILE: "label files",
    MASK_FILE: "mask files",
    DATASET_OUTPUT: "in the dataset's own folder (copies an import made)",
    FILTERED: "left out by include, exclude or modified_since",
    "copied_again_without_etag": "copied again: the listing or the ledger had no ETag to "
    "compare (equal sizes prove nothing)",
}


def left_out_notice(job: ImportJob) -> tuple[bool, str | None]:
    """What to tell of the listed keys the job left out, and whether that is everything it
    listed for a reason other than the user's own filters (then the job fails saying why:
    a job that lists N objects and imports none never reports success silently)."""
    left_out = {k: v for k, v in (job.left_out or {}).items() if v}
    not_left_out = {k: left_out.pop(k) for k in list(left_out) if k in _NOTED}
    parts = ", ".join(f"{n} {_LEFT_OUT_WORDS.get(why, why)}" for why, n in left_out.items())
    considered = job.planned + job.unchanged + job.relabel_planned + job.delete_planned
    if job.listed > 0 and considered == 0:
        prefix = job.manifest.get("source", {}).get("data_prefix", "")
        why = parts or "none of them was an object to import"
        message = f"listed {job.listed} keys under {prefix!r} but imported none: {why}"
        return set(left_out) != {FILTERED}, message
    said = [f"left out of the listing: {parts}"] if parts else []
    said += [f"{n} {_LEFT_OUT_WORDS.get(why, why)}" for why, n in not_left_out.items()]
    return False, "; ".join(said) or None


# --- cancel and retry -----------------------------------------------------------------


def _lock_own_job(s: Session, *, workspace_id: str, job_id: str) -> ImportJob:
    """The caller's job, locked; NotFound for another workspace's or an unknown one."""
    if jobs_q.get_job(s, workspace_id=workspace_id, job_id=job_id) is None:
        raise NotFound(f"import job {job_id!r} does not exist")
    job = jobs_q.lock_job(s, job_id=job_id)
    assert job is not None
    return job


def cancel_import(ctx: ImportContext, *, workspace_id: str, job_id: str) -> ImportJob:
    with ctx.db.uow() as uow:
        job = _lock_own_job(uow.session, workspace_id=workspace_id, job_id=job_id)
        if JobState(job.state).is_final:
            raise Conflict(f"import job {job_id} has already ended ({job.state})")
        job.cancel_requested = True
        if job.listing_done and jobs_q.shards_pending(uow.session, job_id=job.id) == 0:
            finalize_job(uow.session, job)
        uow.commit()
        return job


def retry_import(ctx: ImportContext, *, workspace_id: str, job_id: str) -> ImportJob:
    """Re-run only the job's failed objects, as a new run of the same job."""
    with ctx.db.uow() as uow:
        job = _lock_own_job(uow.session, workspace_id=workspace_id, job_id=job_id)
        if not JobState(job.state).is_final:
            raise Conflict(f"import job {job_id} is still running ({job.state})")
        if job.manifest.get("options", {}).get("dry_run"):
            raise Conflict(f"import job {job_id} was a dry run: submit it again instead")
        if ledger_q.job_counts(uow.session, job_id=job_id).failed == 0:
            raise Conflict(f"import job {job_id} has no failed objects to retry")
        # One import at a time per segment, as for a submission: a retry is a job running.
        running = datasets.running_job_on_segment(uow.session, segment_id=job.segment_id)
        if running is not None and running.id != job.id:
            raise Conflict(
                f"import job {running.id} is still {running.state} on this segment: wait "
                f"for it or cancel it before retrying job {job_id}",
                field="segment",
            )
        job.run += 1
        job.state = JobState.QUEUED.value
        job.listing_done = False
        job.list_cursor = None
        job.cancel_requested = False
        job.error = None
        job.finished_at = None
        job.finishing_at = None
        job.heartbeat_at = None  # the last run's planning lease: free for the new run's
        uow.commit()
    ctx.enqueue.plan_import(job_id)
    return job


def job_progress(ctx: ImportContext, job: ImportJob) -> ledger_q.JobCounts:
    """Live counts while a job runs; the frozen ones once it has ended."""
    if JobState(job.state).is_final or job.manifest.get("options", {}).get("dry_run"):
        return ledger_q.JobCounts(
            copied=job.copied,
            registered=job.registered,
            skipped=job.skipped,
            failed=job.failed,
            bytes_copied=job.bytes_copied,
            relabelled=job.relabelled,
            deleted=job.deleted,
        )
    with ctx.db.uow() as uow:
        counts = ledger_q.job_counts(uow.session, job_id=job.id)
    return dataclasses.replace(counts, skipped=counts.skipped + job.unchanged)


def ledger_row_public(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "remote_path": entry.remote_path,
        "size": entry.size,
        "checksum": entry.checksum,
        "verified_by": entry.verified_by,
        "label": entry.label,
        "source": entry.source_key,
    }
