"""Queries on the metadata DB. Helpers take a session and keyword arguments; none commits."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    tuple_,
    update,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from metadata import access_keys
from metadata.models import (
    FINAL_STATES,
    Dataset,
    DraftBatch,
    DraftObject,
    ImportJob,
    ImportLabel,
    JobNote,
    LabelFact,
    LedgerEntry,
    Outcome,
    Segment,
    Shard,
    StorageConfig,
    Workspace,
)

FINAL_STATE_VALUES = [s.value for s in FINAL_STATES]

ACCESS_KEY_PREFIX = access_keys.ACCESS_KEY_PREFIX
hash_key = access_keys.hash_key


# --- workspaces and access keys -------------------------------------------------------


def workspace_for_key(session: Session, *, key: str) -> Workspace | None:
    workspace_id = workspace_id_for_key(session, key=key)
    return session.get(Workspace, workspace_id) if workspace_id else None


def workspace_id_for_key(session: Session, *, key: str) -> str | None:
    """The id of the key's workspace while the key is good (neither revoked nor expired)."""
    grant = access_keys.grant_for_key(session, key=key)
    return grant.workspace_id if grant is not None and grant.refusal() is None else None


def add_access_key(
    session: Session, *, workspace_id: str, key: str | None = None, role: str = "admin"
) -> str:
    """Store a key's hash; returns the key (a new random one unless given). A workspace's
    first key (create_workspace, the bootstrap key) is its admin key."""
    return access_keys.create_key(session, workspace_id=workspace_id, key=key, role=role)[1]


def create_workspace(session: Session, *, name: str) -> tuple[Workspace, str]:
    workspace = Workspace(name=name)
    session.add(workspace)
    session.flush()
    return workspace, add_access_key(session, workspace_id=workspace.id)


def ensure_bootstrap_key(session: Session, *, key: str) -> Workspace:
    """The workspace of `key`, creating a workspace for it on first use. A bootstrap key
    revoked (or expired) stays so: it is not made again at the next start."""
    grant = access_keys.grant_for_key(session, key=key)
    found = session.get(Workspace, grant.workspace_id) if grant else None
    if found:
        return found
    workspace = Workspace(name="default")
    session.add(workspace)
    session.flush()
    add_access_key(session, workspace_id=workspace.id, key=key)
    return workspace


# --- storage configs, datasets, segments ----------------------------------------------


def get_config(session: Session, *, workspace_id: str, name: str) -> StorageConfig | None:
    return session.exec(
        select(StorageConfig).where(
            StorageConfig.workspace_id == workspace_id, StorageConfig.name == name
        )
    ).first()


def list_configs(session: Session, *, workspace_id: str) -> Sequence[StorageConfig]:
    return session.exec(
        select(StorageConfig)
        .where(StorageConfig.workspace_id == workspace_id)
        .order_by(col(StorageConfig.name))
    ).all()


def get_dataset(session: Session, *, workspace_id: str, name: str) -> Dataset | None:
    return session.exec(
        select(Dataset).where(Dataset.workspace_id == workspace_id, Dataset.name == name)
    ).first()


def list_datasets(session: Session, *, workspace_id: str) -> Sequence[Dataset]:
    return session.exec(
        select(Dataset).where(Dataset.workspace_id == workspace_id).order_by(col(Dataset.name))
    ).all()


def get_or_create_segment(session: Session, *, dataset_id: str, name: str) -> Segment:
    found = get_segment(session, dataset_id=dataset_id, name=name)
    if found:
        return found
    segment = Segment(dataset_id=dataset_id, name=name)
    session.add(segment)
    session.flush()
    return segment


def running_job_on_segment(session: Session, *, segment_id: str) -> ImportJob | None:
    """The segment's unfinished job, if any; locks the segment row so that two submissions
    for one segment are decided one after the other."""
    session.exec(select(Segment).where(Segment.id == segment_id).with_for_update()).first()
    return session.exec(
        select(ImportJob).where(
            ImportJob.segment_id == segment_id, col(ImportJob.state).not_in(FINAL_STATE_VALUES)
        )
    ).first()


def segment_names(session: Session, *, dataset_id: str) -> list[str]:
    return list(session.exec(select(Segment.name).where(Segment.dataset_id == dataset_id)))


def get_segment(session: Session, *, dataset_id: str, name: str) -> Segment | None:
    return session.exec(
        select(Segment).where(Segment.dataset_id == dataset_id, Segment.name == name)
    ).first()


def config_in_use(session: Session, *, config_id: str) -> int:
    n = session.exec(
        select(func.count()).select_from(Dataset).where(Dataset.config_id == config_id)
    ).one()
    jobs = session.exec(
        select(func.count()).select_from(ImportJob).where(ImportJob.source_config_id == config_id)
    ).one()
    return int(n) + int(jobs)


# --- jobs and shards ------------------------------------------------------------------


def lock_job(session: Session, *, job_id: str) -> ImportJob | None:
    """The job row, locked until the transaction ends (PostgreSQL; SQLite's BEGIN IMMEDIATE
    already serializes writers). Shard completions of one job queue on this lock, so exactly
    one of them sees the job's last shard done."""
    return session.exec(select(ImportJob).where(ImportJob.id == job_id).with_for_update()).first()


def get_job(session: Session, *, workspace_id: str, job_id: str) -> ImportJob | None:
    job = session.get(ImportJob, job_id)
    return job if job is not None and job.workspace_id == workspace_id else None


def list_jobs(
    session: Session, *, workspace_id: str, limit: int, offset: int
) -> Sequence[ImportJob]:
    return session.exec(
        select(ImportJob)
        .where(ImportJob.workspace_id == workspace_id)
        .order_by(col(ImportJob.created_at).desc())
        .offset(offset)
        .limit(limit)
    ).all()


def shards_pending(session: Session, *, job_id: str) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(Shard)
            .where(Shard.job_id == job_id, Shard.done == False)  # noqa: E712
        ).one()
    )


def pending_shard_ids(session: Session, *, job_id: str) -> list[str]:
    return list(
        session.exec(
            select(Shard.id).where(Shard.job_id == job_id, Shard.done == False)  # noqa: E712
        ).all()
    )


# --- leases: which task holds a shard (or a job's planning), and since when -----------


def _changed(result: Any) -> bool:
    return bool(result.rowcount)


def claim_shard(
    session: Session,
    *,
    shard_id: str,
    owner: str,
    now: datetime,
    stale: datetime,
    take_over: str | None = None,
) -> bool:
    """Take the shard's lease for `owner` unless another live task holds it: free, stale
    (last heartbeat before `stale`), or held by `take_over` (a holder known to have died).
    Counts the delivery."""
    free = [col(Shard.heartbeat_at).is_(None), col(Shard.heartbeat_at) < stale]
    if take_over is not None:
        free.append(col(Shard.lease_owner) == take_over)
    result = session.execute(
        update(Shard)
        .where(col(Shard.id) == shard_id, col(Shard.done) == False, or_(*free))  # noqa: E712
        .values(lease_owner=owner, heartbeat_at=now, deliveries=col(Shard.deliveries) + 1)
    )
    return _changed(result)


def shard_lease_owner(session: Session, *, shard_id: str) -> str | None:
    return session.exec(select(Shard.lease_owner).where(Shard.id == shard_id)).first()


def release_shard(session: Session, *, shard_id: str, owner: str) -> None:
    """Give up `owner`'s lease on the shard (its task has ended)."""
    session.execute(
        update(Shard)
        .where(col(Shard.id) == shard_id, col(Shard.lease_owner) == owner)
        .values(heartbeat_at=None)
    )


def beat_shard(session: Session, *, shard_id: str, owner: str, now: datetime) -> bool:
    """Refresh the shard's lease; False when `owner` no longer holds it."""
    result = session.execute(
        update(Shard)
        .where(col(Shard.id) == shard_id, col(Shard.lease_owner) == owner)
        .values(heartbeat_at=now)
    )
    return _changed(result)


def claim_planning(session: Session, *, job_id: str, now: datetime, stale: datetime) -> bool:
    """Take the lease of the job's planning unless a live task holds it. The heartbeat's
    time itself is the holder's token (`beat_planning` compares it)."""
    result = session.execute(
        update(ImportJob)
        .where(
            col(ImportJob.id) == job_id,
            or_(col(ImportJob.heartbeat_at).is_(None), col(ImportJob.heartbeat_at) < stale),
        )
        .values(heartbeat_at=now)
    )
    return _changed(result)


def beat_planning(session: Session, *, job_id: str, token: datetime, now: datetime) -> bool:
    """Move the planning lease from `token` (the holder's last heartbeat) to `now`; False
    when someone else took it meanwhile (or recovery released it)."""
    result = session.execute(
        update(ImportJob)
        .where(col(ImportJob.id) == job_id, col(ImportJob.heartbeat_at) == token)
        .values(heartbeat_at=now)
    )
    return _changed(result)


class ShardLease(NamedTuple):
    """What recovery needs to know about a pending shard of a running job."""

    id: str
    job_id: str
    seq: int
    dispatched_at: datetime  # the latest sending (its creation, before any resend)
    heartbeat_at: datetime | None


def unleased_shards(
    session: Session, *, stale: datetime, queue_empty: bool, limit: int
) -> list[ShardLease]:
    """Pending shards of running jobs to send again: no live task holds them, they were
    sent before `stale`, and either a task took them since (and died) or, with the queue
    empty, none did (their message cannot still be waiting)."""
    sent = func.coalesce(col(Shard.dispatched_at), col(Shard.created_at))
    heartbeat = col(Shard.heartbeat_at)
    taken_since_sent = heartbeat >= sent
    rows = session.execute(
        sa_select(col(Shard.id), col(Shard.job_id), col(Shard.seq), sent, heartbeat)
        .join(ImportJob, col(ImportJob.id) == Shard.job_id)
        .where(
            col(ImportJob.state).not_in(FINAL_STATE_VALUES),
            col(Shard.done) == False,  # noqa: E712
            or_(heartbeat.is_(None), heartbeat < stale),
            sent < stale,
            or_(heartbeat.is_not(None) & taken_since_sent, literal(queue_empty)),
        )
        .order_by(col(Shard.job_id), col(Shard.seq))
        .limit(limit)
    ).all()
    return [ShardLease(*row) for row in rows]


def mark_shard_resent(session: Session, *, lease: ShardLease, now: datetime) -> bool:
    """Record a resend of the shard, unless it changed since `lease` was read (a task
    claimed it, or another worker's recovery resent it first)."""
    heartbeat = col(Shard.heartbeat_at)
    result = session.execute(
        update(Shard)
        .where(
            col(Shard.id) == lease.id,
            col(Shard.done) == False,  # noqa: E712
            func.coalesce(col(Shard.dispatched_at), col(Shard.created_at)) == lease.dispatched_at,
            heartbeat.is_(None) if lease.heartbeat_at is None else heartbeat == lease.heartbeat_at,
        )
        .values(dispatched_at=now)
    )
    return _changed(result)


def unplanned_jobs(session: Session, *, stale: datetime) -> Sequence[ImportJob]:
    """Running jobs whose listing is not done and whose planning no live task holds."""
    return session.exec(
        select(ImportJob).where(
            col(ImportJob.state).not_in(FINAL_STATE_VALUES),
            col(ImportJob.listing_done) == False,  # noqa: E712
            or_(col(ImportJob.heartbeat_at).is_(None), col(ImportJob.heartbeat_at) < stale),
        )
    ).all()


def unfinished_jobs(
    session: Session, *, stale: datetime, claim_stale: datetime
) -> Sequence[ImportJob]:
    """Running jobs with listing done and every shard done that nobody is finishing: not
    claimed (or claimed before `claim_stale`), and not sent to be finished since `stale`."""
    pending = (
        sa_select(col(Shard.id))
        .where(col(Shard.job_id) == col(ImportJob.id), col(Shard.done) == False)  # noqa: E712
        .exists()
    )
    return session.exec(
        select(ImportJob).where(
            col(ImportJob.state).not_in(FINAL_STATE_VALUES),
            col(ImportJob.listing_done) == True,  # noqa: E712
            ~pending,
            or_(col(ImportJob.finishing_at).is_(None), col(ImportJob.finishing_at) < claim_stale),
            or_(col(ImportJob.heartbeat_at).is_(None), col(ImportJob.heartbeat_at) < stale),
        )
    ).all()


def mark_job_resent(
    session: Session, *, job_id: str, seen: datetime | None, now: datetime | None
) -> bool:
    """Set the job's lease time from `seen` (as read) to `now` (None: released), unless it
    changed meanwhile."""
    heartbeat = col(ImportJob.heartbeat_at)
    result = session.execute(
        update(ImportJob)
        .where(
            col(ImportJob.id) == job_id,
            heartbeat.is_(None) if seen is None else heartbeat == seen,
        )
        .values(heartbeat_at=now)
    )
    return _changed(result)


# --- the ledger -----------------------------------------------------------------------


@dataclass(frozen=True)
class JobCounts:
    copied: int = 0
    registered: int = 0
    skipped: int = 0
    failed: int = 0
    bytes_copied: int = 0
    relabelled: int = 0
    deleted: int = 0


def job_counts(session: Session, *, job_id: str) -> JobCounts:
    """What the ledger says this job did so far (exact under redelivery: one row per object)."""
    rows = session.exec(
        select(LedgerEntry.outcome, func.count(), func.coalesce(func.sum(LedgerEntry.size), 0))
        .where(LedgerEntry.job_id == job_id)
        .group_by(col(LedgerEntry.outcome))
    ).all()
    by = {outcome: (int(n), int(size)) for outcome, n, size in rows}
    failed_beside = session.exec(
        select(func.count()).where(LedgerEntry.failed_job_id == job_id)
    ).one()
    return JobCounts(
        copied=by.get(Outcome.COPIED, (0, 0))[0],
        registered=by.get(Outcome.REGISTERED, (0, 0))[0],
        skipped=by.get(Outcome.SKIPPED, (0, 0))[0],
        failed=by.get(Outcome.FAILED, (0, 0))[0] + int(failed_beside),
        bytes_copied=by.get(Outcome.COPIED, (0, 0))[1],
        relabelled=by.get(Outcome.RELABELLED, (0, 0))[0],
        deleted=by.get(Outcome.DELETED, (0, 0))[0],
    )


def ledger_entries_by_path(
    session: Session, *, segment_id: str, remote_paths: Iterable[str]
) -> dict[str, LedgerEntry]:
    paths = list(remote_paths)
    if not paths:
        return {}
    rows = session.exec(
        select(LedgerEntry).where(
            LedgerEntry.segment_id == segment_id, col(LedgerEntry.remote_path).in_(paths)
        )
    ).all()
    return {row.remote_path: row for row in rows}


def job_dest_keys(session: Session, *, job_id: str, keys: Sequence[str]) -> set[str]:
    """Which of `keys` the job's ledger rows name as their destination."""
    if not keys:
        return set()
    rows = session.exec(
        select(LedgerEntry.dest_key).where(
            LedgerEntry.job_id == job_id, col(LedgerEntry.dest_key).in_(list(keys))
        )
    ).all()
    return set(rows)


def present_entries_with_prefix(
    session: Session, *, segment_id: str, prefix: str, limit: int = 100
) -> Sequence[LedgerEntry]:
    """Present entries of the segment whose remote path starts with `prefix` (a key range:
    the index on (segment, remote path) answers it)."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return session.exec(
        select(LedgerEntry)
        .where(
            LedgerEntry.segment_id == segment_id,
            col(LedgerEntry.remote_path) >= prefix,
            col(LedgerEntry.remote_path) < upper,
            col(LedgerEntry.outcome).in_(_PRESENT),
        )
        .limit(limit)
    ).all()


def ledger_entries_by_label(
    session: Session, *, segment_id: str, label_keys: Sequence[str]
) -> Sequence[LedgerEntry]:
    if not label_keys:
        return []
    return session.exec(
        select(LedgerEntry).where(
            LedgerEntry.segment_id == segment_id, col(LedgerEntry.label_key).in_(list(label_keys))
        )
    ).all()


class LedgerFacts(NamedTuple):
    """What a sync compares of a ledger entry: plain columns, no ORM object (a sync reads
    every entry of the segment)."""

    remote_path: str
    source_config_id: str
    source_key: str
    outcome: str
    source_etag: str | None
    size: int
    label_key: str | None
    label_etag: str | None
    labelled: bool  # the entry holds a parsed label

    @classmethod
    def of(cls, entry: LedgerEntry) -> LedgerFacts:
        return cls(
            entry.remote_path,
            entry.source_config_id,
            entry.source_key,
            entry.outcome,
            entry.source_etag,
            entry.size,
            entry.label_key,
            entry.label_etag,
            entry.label is not None,
        )


def ledger_range(
    session: Session,
    *,
    segment_id: str,
    after: str | None,
    upto: str | None,
    limit: int,
    by_label: bool = False,
    within: str = "",
) -> list[LedgerFacts]:
    """The segment's entries whose remote path (or label key, `by_label`) starts with
    `within` and lies in (after, upto] — None: unbounded — in byte order, at most `limit`.
    A sync walks these beside the source listing, which comes in the same order."""
    t = LedgerEntry.__table__.c  # type: ignore[attr-defined]
    column = t.label_key if by_label else t.remote_path
    query = sa_select(
        t.remote_path,
        t.source_config_id,
        t.source_key,
        t.outcome,
        t.source_etag,
        t.size,
        t.label_key,
        t.label_etag,
        t.label_type.is_not(None),  # set with the label, and only then
    ).where(t.segment_id == segment_id)
    if after is not None:
        query = query.where(column > after)
    elif within:
        query = query.where(column >= within)
    if upto is not None:
        query = query.where(column <= upto)
    if within:
        query = query.where(column < _prefix_end(within))
    rows = session.execute(query.order_by(column).limit(limit)).all()
    return [LedgerFacts(*row) for row in rows]


def walk_ledger(
    session: Session,
    *,
    segment_id: str,
    after: str | None,
    upto: str | None,
    by_label: bool = False,
    within: str = "",
    chunk: int = 2000,
) -> Iterator[LedgerFacts]:
    """All of `ledger_range`'s entries, read `chunk` at a time (memory: one chunk)."""
    while True:
        rows = ledger_range(
            session,
            segment_id=segment_id,
            after=after,
            upto=upto,
            limit=chunk,
            by_label=by_label,
            within=within,
        )
        yield from rows
        if len(rows) < chunk:
            return
        after = rows[-1].label_key if by_label else rows[-1].remote_path


def _prefix_end(prefix: str) -> str:
    """The least string above every string starting with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else ""


def present_from_source(
    session: Session, *, segment_id: str, source_config_id: str, key_prefix: str
) -> int:
    """How many present entries of the segment came from this source's prefix."""
    query = (
        select(func.count())
        .select_from(LedgerEntry)
        .where(
            LedgerEntry.segment_id == segment_id,
            LedgerEntry.source_config_id == source_config_id,
            col(LedgerEntry.outcome).in_(_PRESENT),
        )
    )
    if key_prefix:
        query = query.where(
            col(LedgerEntry.source_key) >= key_prefix,
            col(LedgerEntry.source_key) < _prefix_end(key_prefix),
        )
    return int(session.exec(query).one())


def segment_has_entries(session: Session, *, segment_id: str) -> bool:
    row = session.exec(
        select(LedgerEntry.id)
        .where(LedgerEntry.segment_id == segment_id, col(LedgerEntry.outcome).in_(_PRESENT))
        .limit(1)
    ).first()
    return row is not None


def report_page(
    session: Session, *, job_id: str, after_id: int, limit: int
) -> Sequence[tuple[Any, ...]]:
    """(id, source key, destination, outcome, size, checksum, verified by, attempts, error
    code, error message) of the job's ledger rows after `after_id`, in id order: plain
    tuples, no ORM. An entry the job failed on that stays as an earlier job left it is a
    `failed` row of this job's."""
    t = LedgerEntry.__table__.c  # type: ignore[attr-defined]
    failed_beside = t.failed_job_id == job_id
    query = (
        sa_select(
            t.id,
            t.source_key,
            t.dest_key,
            case((failed_beside, literal(Outcome.FAILED.value)), else_=t.outcome),
            t.size,
            t.checksum,
            t.verified_by,
            t.attempts,
            t.error_code,
            t.error_message,
        )
        .where(or_(t.job_id == job_id, failed_beside), t.id > after_id)
        .order_by(t.id)
        .limit(limit)
    )
    return [tuple(row) for row in session.execute(query).all()]


def _failed_by(job_id: str) -> Any:
    """The entries `job_id` failed on: its own failed rows, and the present entries of an
    earlier job it failed on (recorded beside them)."""
    return or_(
        and_(col(LedgerEntry.job_id) == job_id, col(LedgerEntry.outcome) == Outcome.FAILED.value),
        col(LedgerEntry.failed_job_id) == job_id,
    )


def failed_entries_page(
    session: Session, *, job_id: str, after_id: int, limit: int
) -> Sequence[LedgerEntry]:
    return session.exec(
        select(LedgerEntry)
        .where(_failed_by(job_id), col(LedgerEntry.id) > after_id)
        .order_by(col(LedgerEntry.id))
        .limit(limit)
    ).all()


_UPSERT_UPDATES = (
    "job_id",
    "outcome",
    "source_config_id",
    "source_key",
    "source_etag",
    "dest_key",
    "size",
    "checksum",
    "verified_by",
    "label_key",
    "label_etag",
    "label_type",
    "label",
    "error_code",
    "error_message",
    "updated_at",
)


@functools.cache
def _ledger_upsert(dialect: str) -> Any:
    """One INSERT … ON CONFLICT DO UPDATE per dialect, built once: executed with a batch of
    rows as parameters, SQLAlchemy compiles it once and sends multi-row VALUES."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # On the table, not the ORM entity: the rows come complete, and the ORM's bulk path
    # would spend more CPU per row than the database does.
    stmt = insert(LedgerEntry.__table__)  # type: ignore[attr-defined]
    table = LedgerEntry.__table__.c  # type: ignore[attr-defined]
    new = stmt.excluded
    # A failure never replaces a present entry: the object stays in the dataset as it was
    # (a duplicate delivery's failure of an object the same job copied is no failure at
    # all; another job's is recorded beside the entry, and counted as that job's).
    # Constants in the SQL text: an executemany takes no expanding IN parameters.
    present = or_(*(table.outcome == literal_column(f"'{v}'") for v in _PRESENT))
    keep = and_(new.outcome == literal_column(f"'{Outcome.FAILED.value}'"), present)
    same_job = and_(keep, table.job_id == new.job_id)
    updates: dict[str, Any] = {
        name: case((keep, table[name]), else_=new[name]) for name in _UPSERT_UPDATES
    }
    for name in ("error_code", "error_message"):
        updates[name] = case((same_job, table[name]), else_=new[name])
    updates["updated_at"] = new.updated_at
    updates["failed_job_id"] = case(
        (same_job, table.failed_job_id), (keep, new.job_id), else_=null()
    )
    # Attempts add up across the runs of one job (a retry), and start over for a new job.
    updates["attempts"] = case(
        (table.job_id == stmt.excluded.job_id, table.attempts + stmt.excluded.attempts),
        else_=stmt.excluded.attempts,
    )
    return stmt.on_conflict_do_update(index_elements=["segment_id", "remote_path"], set_=updates)


def upsert_ledger(session: Session, *, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or update ledger entries keyed by (segment, remote_path), one batch per call."""
    if rows:
        session.execute(_ledger_upsert(session.get_bind().dialect.name), list(rows))


def segment_data(
    session: Session,
    *,
    segment_id: str,
    offset: int,
    limit: int,
    category: str | None = None,
    label_type: str | None = None,
) -> Sequence[LedgerEntry]:
    """The segment's objects (present ones), optionally only those with an annotation of
    `label_type` and/or `category`."""
    query = select(LedgerEntry).where(
        LedgerEntry.segment_id == segment_id, col(LedgerEntry.outcome).in_(_PRESENT)
    )
    if category is not None or label_type is not None:
        facts = select(LabelFact.remote_path).where(LabelFact.segment_id == segment_id)
        if category is not None:
            facts = facts.where(LabelFact.category == category)
        if label_type is not None:
            facts = facts.where(LabelFact.label_type == label_type)
        query = query.where(col(LedgerEntry.remote_path).in_(facts))
    return session.exec(
        query.order_by(col(LedgerEntry.remote_path)).offset(offset).limit(limit)
    ).all()


def count_segment_data(session: Session, *, segment_id: str) -> int:
    """How many objects the segment holds (present ones)."""
    return int(
        session.exec(
            select(func.count()).where(
                LedgerEntry.segment_id == segment_id, col(LedgerEntry.outcome).in_(_PRESENT)
            )
        ).one()
    )


def job_failures(
    session: Session, *, job_id: str, offset: int, limit: int
) -> Sequence[LedgerEntry]:
    return session.exec(
        select(LedgerEntry)
        .where(_failed_by(job_id))
        .order_by(col(LedgerEntry.id))
        .offset(offset)
        .limit(limit)
    ).all()


# --- label facts, statistics and job notes ---------------------------------------------


def replace_label_facts(
    session: Session, *, segment_id: str, facts: dict[str, list[tuple[str, str | None]]]
) -> None:
    """Rewrite the (type, category) facts of the given entries (remote_path -> facts)."""
    if not facts:
        return
    session.execute(
        delete(LabelFact).where(
            col(LabelFact.segment_id) == segment_id, col(LabelFact.remote_path).in_(list(facts))
        )
    )
    rows = [
        {"segment_id": segment_id, "remote_path": path, "label_type": t, "category": c}
        for path, pairs in facts.items()
        for t, c in pairs
    ]
    if rows:
        session.execute(insert(LabelFact.__table__), rows)  # type: ignore[attr-defined]


_PRESENT = [
    Outcome.COPIED.value,
    Outcome.REGISTERED.value,
    Outcome.SKIPPED.value,
    Outcome.RELABELLED.value,
]
PRESENT_OUTCOMES = frozenset(_PRESENT)


def label_statistics(
    session: Session, *, segment_ids: Sequence[str]
) -> list[tuple[str, str | None, int]]:
    """(type, category, annotations) over the objects present in the segments."""
    present = select(LedgerEntry.segment_id, LedgerEntry.remote_path).where(
        col(LedgerEntry.segment_id).in_(segment_ids), col(LedgerEntry.outcome).in_(_PRESENT)
    )
    rows = session.exec(
        select(LabelFact.label_type, LabelFact.category, func.count())
        .where(
            col(LabelFact.segment_id).in_(segment_ids),
            tuple_(LabelFact.segment_id, LabelFact.remote_path).in_(present),
        )
        .group_by(col(LabelFact.label_type), col(LabelFact.category))
        .order_by(col(LabelFact.label_type), col(LabelFact.category))
    ).all()
    return [(t, c, int(n)) for t, c, n in rows]


def add_job_notes(session: Session, *, job_id: str, kind: str, keys: Sequence[str]) -> None:
    if keys:
        session.execute(insert(JobNote), [{"job_id": job_id, "kind": kind, "key": k} for k in keys])


def clear_job_notes(session: Session, *, job_id: str, kind: str | None = None) -> None:
    query = delete(JobNote).where(col(JobNote.job_id) == job_id)
    if kind is not None:
        query = query.where(col(JobNote.kind) == kind)
    session.execute(query)


def notes_among(session: Session, *, job_id: str, kind: str, keys: Sequence[str]) -> set[str]:
    """Which of `keys` the job noted as `kind`."""
    if not keys:
        return set()
    rows = session.exec(
        select(JobNote.key).where(
            JobNote.job_id == job_id, JobNote.kind == kind, col(JobNote.key).in_(list(keys))
        )
    ).all()
    return set(rows)


def count_notes(session: Session, *, job_id: str, kind: str) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(JobNote)
            .where(JobNote.job_id == job_id, JobNote.kind == kind)
        ).one()
    )


def notes_after(
    session: Session, *, job_id: str, kind: str, after_id: int, limit: int
) -> Sequence[JobNote]:
    return session.exec(
        select(JobNote)
        .where(JobNote.job_id == job_id, JobNote.kind == kind, col(JobNote.id) > after_id)
        .order_by(col(JobNote.id))
        .limit(limit)
    ).all()


def job_notes(
    session: Session, *, job_id: str, kind: str, offset: int, limit: int
) -> Sequence[JobNote]:
    return session.exec(
        select(JobNote)
        .where(JobNote.job_id == job_id, JobNote.kind == kind)
        .order_by(col(JobNote.id))
        .offset(offset)
        .limit(limit)
    ).all()


def count_unlabelled(session: Session, *, job_id: str) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(LedgerEntry)
            .where(
                LedgerEntry.job_id == job_id,
                col(LedgerEntry.label_key).is_(None),
                col(LedgerEntry.outcome).in_(_PRESENT),
            )
        ).one()
    )


def unlabelled_entries(
    session: Session, *, job_id: str, offset: int, limit: int
) -> Sequence[LedgerEntry]:
    return session.exec(
        select(LedgerEntry)
        .where(
            LedgerEntry.job_id == job_id,
            col(LedgerEntry.label_key).is_(None),
            col(LedgerEntry.outcome).in_(_PRESENT),
        )
        .order_by(col(LedgerEntry.id))
        .offset(offset)
        .limit(limit)
    ).all()


def label_keys_paired(session: Session, *, segment_id: str, label_keys: Sequence[str]) -> set[str]:
    if not label_keys:
        return set()
    rows = session.exec(
        select(LedgerEntry.label_key).where(
            LedgerEntry.segment_id == segment_id,
            col(LedgerEntry.label_key).in_(list(label_keys)),
        )
    ).all()
    return {key for key in rows if key is not None}


# --- labels read from one file for a segment (COCO) -----------------------------------


def clear_import_labels(session: Session, *, job_id: str) -> None:
    session.execute(delete(ImportLabel).where(col(ImportLabel.job_id) == job_id))


def add_import_labels(
    session: Session, *, job_id: str, labels: Sequence[tuple[str, dict[str, Any] | None]]
) -> None:
    if labels:
        session.execute(
            insert(ImportLabel.__table__),  # type: ignore[attr-defined]  # rows are complete
            [{"job_id": job_id, "name": name, "label": label} for name, label in labels],
        )


def import_labels(
    session: Session, *, job_id: str, names: Sequence[str]
) -> dict[str, dict[str, Any] | None]:
    rows = session.exec(
        select(ImportLabel.name, ImportLabel.label).where(
            ImportLabel.job_id == job_id, col(ImportLabel.name).in_(list(names))
        )
    ).all()
    return {name: dict(label) if label is not None else None for name, label in rows}


def import_labels_without_object(
    session: Session, *, job_id: str, segment_id: str, after_id: int, limit: int
) -> Sequence[ImportLabel]:
    present = select(LedgerEntry.remote_path).where(LedgerEntry.segment_id == segment_id)
    return session.exec(
        select(ImportLabel)
        .where(
            ImportLabel.job_id == job_id,
            col(ImportLabel.id) > after_id,
            col(ImportLabel.name).not_in(present),
        )
        .order_by(col(ImportLabel.id))
        .limit(limit)
    ).all()


# --- job progress: throughput from the ledger's update times ----------------------------


def _unix_seconds(session: Session, column: Any) -> Any:
    """A timestamp column as Unix seconds (SQLite keeps UTC as text: julianday reads it)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy import literal_column

        # date_part is double precision; EXTRACT's numeric makes the bucketing twice as slow.
        return func.date_part(literal_column("'epoch'"), column)
    return (func.julianday(column) - 2440587.5) * 86400.0


def ledger_throughput(
    session: Session, *, job_id: str, since: datetime, bucket_seconds: int
) -> list[tuple[int, int, int, int]]:
    """(bucket, entries, bytes, failed entries) of the job's ledger entries settled at or
    after `since`, per `bucket_seconds` of their update time; a bucket starts at
    bucket × bucket_seconds Unix seconds. Bytes leave deletions out."""
    from sqlalchemy import BigInteger, cast, literal_column

    # Inlined, not bound: PostgreSQL matches the GROUP BY to the select only when the
    # expressions are the same text.
    width: Any = literal_column(str(int(bucket_seconds)))
    seconds = _unix_seconds(session, col(LedgerEntry.updated_at)) / width
    # floor; SQLite may lack it, and its CAST truncates, which is floor for times after 1970.
    postgres = session.get_bind().dialect.name == "postgresql"
    bucket = cast(func.floor(seconds) if postgres else seconds, BigInteger)
    rows = session.exec(
        select(
            bucket,
            func.count(),
            func.coalesce(
                func.sum(
                    case(
                        (col(LedgerEntry.outcome) != Outcome.DELETED.value, LedgerEntry.size),
                        else_=0,
                    )
                ),
                0,
            ),
            func.coalesce(
                func.sum(case((col(LedgerEntry.outcome) == Outcome.FAILED.value, 1), else_=0)), 0
            ),
        )
        .where(
            LedgerEntry.job_id == job_id,
            LedgerEntry.outcome != Outcome.PENDING.value,
            col(LedgerEntry.updated_at) >= since,
        )
        .group_by(bucket)
        .order_by(bucket)
    ).all()
    return [(int(b), int(n), int(size), int(failed)) for b, n, size, failed in rows]


def run_started_at(session: Session, *, job_id: str, run: int) -> datetime | None:
    """When the job's run `run` wrote its first shard."""
    return session.exec(
        select(func.min(Shard.created_at)).where(Shard.job_id == job_id, Shard.run == run)
    ).one()


def run_work(session: Session, *, job_id: str, run: int) -> tuple[int, int]:
    """(objects, bytes to copy) of the shards of the job's run `run` (bytes as listed)."""
    objects, size = session.exec(
        select(
            func.coalesce(func.sum(Shard.object_count), 0),
            func.coalesce(
                func.sum(case((col(Shard.kind) == "copy", Shard.byte_count), else_=0)), 0
            ),
        ).where(Shard.job_id == job_id, Shard.run == run)
    ).one()
    return int(objects), int(size)


# --- drafts (the TensorBay-compatible API) ---------------------------------------------


def register_draft_objects(
    session: Session,
    *,
    dataset_id: str,
    draft_number: int,
    segment_name: str,
    objects: Sequence[tuple[str, str, dict[str, Any] | None]],
) -> None:
    """Hold `(cloud_path, remote_path, label)` objects (distinct remote paths) for the
    draft's segment until they are gathered into a job; one registered again before that
    replaces the waiting one. Takes no lock but the rows' own: registrations into a segment
    run side by side. The caller then asks for a gathering (`flag_draft_batch`)."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = datetime.now(tz=UTC)
    stmt = insert_(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[
            table.c.dataset_id,
            table.c.draft_number,
            table.c.segment_name,
            table.c.name_sha256,
        ],
        index_where=table.c.job_id.is_(None),
        set_={
            "cloud_path": stmt.excluded.cloud_path,
            "remote_path": stmt.excluded.remote_path,
            "label": stmt.excluded.label,
            "created_at": stmt.excluded.created_at,
        },
    )
    session.execute(
        stmt,
        [
            {
                "dataset_id": dataset_id,
                "draft_number": draft_number,
                "segment_name": segment_name,
                "cloud_path": cloud,
                "remote_path": remote,
                "name_sha256": hashlib.sha256(remote.encode()).hexdigest(),
                "label": label,
                "job_id": None,
                "created_at": now,
            }
            for cloud, remote, label in objects
        ],
    )


def flag_draft_batch(
    session: Session, *, dataset_id: str, draft_number: int, segment_name: str
) -> bool:
    """Mark the segment's gathering as queued unless it is; True when this call did (the
    caller then sends it). Called after the registration committed. Found queued, the
    gathering has not yet stood its mark down, and looks only after it does (importer/
    drafts.py): it will see what was registered. Writes nothing then: the common case, one
    gathering serving many registrations. Of concurrent callers, one flips the mark."""
    batch = DraftBatch.__table__  # type: ignore[attr-defined]
    where = (
        batch.c.dataset_id == dataset_id,
        batch.c.draft_number == draft_number,
        batch.c.segment_name == segment_name,
    )
    now = datetime.now(tz=UTC)
    row = session.execute(sa_select(batch.c.queued).where(*where)).first()
    if row is not None and row[0]:
        return False  # queued: a read is enough (the common case)
    if row is not None:
        # Of concurrent callers one flips it; the others wait for it, then find it queued.
        result: Any = session.execute(
            update(batch)
            .where(*where, batch.c.queued.is_(False))
            .values(queued=True, updated_at=now)
        )
        return int(result.rowcount or 0) == 1
    # The segment's first registration makes its batch row, queued (or finds that a
    # concurrent one just did).
    dialect = session.get_bind().dialect.name
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    made = session.execute(
        insert_(batch)
        .values(
            dataset_id=dataset_id,
            draft_number=draft_number,
            segment_name=segment_name,
            queued=True,
            updated_at=now,
        )
        .on_conflict_do_nothing()
        .returning(batch.c.queued)
    ).first()
    return made is not None


def clear_draft_batch(
    session: Session, *, dataset_id: str, draft_number: int, segment_name: str
) -> None:
    """A gathering stands its queued mark down before it looks (see importer/drafts.py)."""
    session.execute(
        update(DraftBatch)
        .where(
            col(DraftBatch.dataset_id) == dataset_id,
            col(DraftBatch.draft_number) == draft_number,
            col(DraftBatch.segment_name) == segment_name,
        )
        .values(queued=False, updated_at=datetime.now(tz=UTC))
    )


def _waiting(dataset_id: str, draft_number: int, segment_name: str | None) -> Any:
    table = DraftObject.__table__  # type: ignore[attr-defined]
    where = [
        table.c.dataset_id == dataset_id,
        table.c.draft_number == draft_number,
        table.c.job_id.is_(None),
    ]
    if segment_name is not None:
        where.append(table.c.segment_name == segment_name)
    return where


def waiting_draft_objects(
    session: Session, *, dataset_id: str, draft_number: int, segment_name: str | None = None
) -> int:
    """How many registered objects wait to be gathered (in one segment, or the draft)."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    where = _waiting(dataset_id, draft_number, segment_name)
    return int(
        session.execute(sa_select(func.count()).select_from(table).where(*where)).scalar_one()
    )


def waiting_draft_segments(session: Session, *, dataset_id: str, draft_number: int) -> list[str]:
    table = DraftObject.__table__  # type: ignore[attr-defined]
    where = _waiting(dataset_id, draft_number, None)
    rows = session.execute(sa_select(table.c.segment_name).where(*where).distinct()).all()
    return sorted(r[0] for r in rows)


def assign_draft_objects(
    session: Session, *, dataset_id: str, draft_number: int, segment_name: str, job_id: str
) -> int:
    """Give the segment's waiting objects (one per name: the unique index sees to that) to
    `job_id`; their labels stay with them (`draft_labels`). Returns how many it took."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    where = _waiting(dataset_id, draft_number, segment_name)
    result: Any = session.execute(update(table).where(*where).values(job_id=job_id))
    return int(result.rowcount or 0)


def draft_objects_outside(session: Session, *, job_id: str, prefix: str) -> int:
    """How many of a job's registered objects have a cloud path outside `prefix`."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    outside = func.substr(table.c.cloud_path, 1, len(prefix)) != prefix
    count = session.execute(
        sa_select(func.count()).select_from(table).where(table.c.job_id == job_id, outside)
    ).scalar_one()
    return int(count)


def draft_labels(
    session: Session, *, job_id: str, names: Sequence[str]
) -> dict[str, dict[str, Any] | None]:
    """The labels sent with a job's registered objects, by name (as `import_labels`)."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    hashes = [hashlib.sha256(n.encode()).hexdigest() for n in names]
    rows = session.execute(
        sa_select(table.c.remote_path, table.c.label).where(
            table.c.job_id == job_id, table.c.name_sha256.in_(hashes)
        )
    ).all()
    return {str(name): dict(label) if label is not None else None for name, label in rows}


def draft_objects_page(
    session: Session, *, job_id: str, after_id: int, limit: int
) -> list[tuple[int, str, str]]:
    """`(id, cloud_path, remote_path)` of a job's registered objects, in the order they came."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    rows = session.execute(
        sa_select(table.c.id, table.c.cloud_path, table.c.remote_path)
        .where(table.c.job_id == job_id, table.c.id > after_id)
        .order_by(table.c.id)
        .limit(limit)
    ).all()
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def draft_job_ids(session: Session, *, dataset_id: str, draft_number: int) -> list[str]:
    """The jobs the draft's registered objects were gathered into."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    rows = session.execute(
        sa_select(table.c.job_id)
        .where(
            table.c.dataset_id == dataset_id,
            table.c.draft_number == draft_number,
            table.c.job_id.is_not(None),
        )
        .distinct()
    ).all()
    return [str(r[0]) for r in rows]


def claim_stale_draft_batches(session: Session, *, stale: datetime, now: datetime) -> list[str]:
    """Batch keys (`dataset:draft:segment`) of gatherings queued before `stale` and not
    heard of since, marked as sent again at `now` (so concurrent sweeps send each once)."""
    rows = session.exec(
        select(DraftBatch)
        .where(col(DraftBatch.queued).is_(True), col(DraftBatch.updated_at) < stale)
        .with_for_update(skip_locked=True)
    ).all()
    for batch in rows:
        batch.updated_at = now
        session.add(batch)
    return [f"{b.dataset_id}:{b.draft_number}:{b.segment_name}" for b in rows]


def drop_waiting_draft_objects(session: Session, *, dataset_id: str, draft_number: int) -> int:
    """A closed draft's objects that no job took: dropped, and its gatherings stood down."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    result: Any = session.execute(delete(table).where(*_waiting(dataset_id, draft_number, None)))
    session.execute(
        update(DraftBatch)
        .where(
            col(DraftBatch.dataset_id) == dataset_id, col(DraftBatch.draft_number) == draft_number
        )
        .values(queued=False)
    )
    return int(result.rowcount or 0)
