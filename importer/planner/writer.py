"""Writing planned objects as shards: the counts, the shards and the cursor in one
transaction under the job's lock, then each shard's copy enqueued."""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

from importer import recovery
from importer.context import ImportContext, log
from importer.jobs import JobPlace
from importer.planner.notes import UNSAFE_KEY
from importer.planner.register import PageRegistrar
from importer.rules import PlannedObject, key_problem, split_into_shards
from metadata.models import ImportJob, Outcome, Shard, utcnow
from metadata.queries import jobs, labels
from metadata.queries import ledger as ledger_q
from metadata.queries.ledger import LedgerRow


def write_shards(
    ctx: ImportContext,
    place: JobPlace,
    objects: list[PlannedObject] | Callable[[], list[PlannedObject]],
    *,
    cursor: str | None,
    count: Callable[[Session, ImportJob], None] | None = None,
    kind: str = "copy",
    registrar: PageRegistrar | None = None,
) -> bool:
    """In one transaction under the job's lock: `count` (which may decide `objects`), the
    shards of `objects` (or, with a `registrar` that can, their ledger rows: an in-place
    import's page registered here) and the cursor; then enqueue the shards. False when the
    job was cancelled."""
    opts = place.manifest.options
    with ctx.db.uow() as uow:
        s = uow.session
        job = jobs.lock_job(s, job_id=place.job.id)
        if job is None or job.cancel_requested or recovery.lease_lost():
            return False
        if count is not None:
            count(s, job)
        todo = objects() if callable(objects) else objects
        if kind == "copy":
            job.planned += sum(1 for o in todo if o.action == "copy")
            todo = _fail_unsafe_keys(s, place, todo)
            if registrar is not None and registrar.register(s, todo):
                todo = []
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


def _fail_unsafe_keys(
    s: Session, place: JobPlace, todo: list[PlannedObject]
) -> list[PlannedObject]:
    """The objects of `todo` safe to copy. A source may list a key no dataset should hold
    (a '..' segment, control characters: see `key_problem`); each such object fails alone,
    its ledger row saying why, and the job goes on."""
    safe: list[PlannedObject] = []
    rows: list[LedgerRow] = []
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
        ledger_q.upsert_ledger(s, rows=rows)
        labels.replace_label_facts(
            s, segment_id=place.segment.id, facts={r["remote_path"]: [] for r in rows}
        )
    return safe
