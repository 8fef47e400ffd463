"""The ledger, one entry per object of a segment: written in batches, counted per job, read
by the import and by a sync's diff. Helpers take a session and keyword arguments; none commits."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypedDict

from sqlalchemy import and_, case, func, literal_column, null, or_
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from metadata.models import LedgerEntry, Outcome
from metadata.queries._common import PRESENT
from metadata.queries.bulk import DriverBatch


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
            col(LedgerEntry.outcome).in_(PRESENT),
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
            col(LedgerEntry.outcome).in_(PRESENT),
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
        .where(LedgerEntry.segment_id == segment_id, col(LedgerEntry.outcome).in_(PRESENT))
        .limit(1)
    ).first()
    return row is not None


class LedgerRow(TypedDict):
    """A ledger entry as `upsert_ledger` writes it: every column but the id and
    `failed_job_id`, which the upsert decides. Every key is required: a batch is one
    multi-row INSERT, whose rows must all name the same columns."""

    dataset_id: str
    segment_id: str
    remote_path: str
    job_id: str
    outcome: str
    source_config_id: str
    source_key: str
    source_etag: str | None
    dest_key: str
    size: int
    checksum: str | None
    verified_by: str | None
    label_key: str | None
    label_etag: str | None
    label_type: str | None
    label: dict[str, Any] | None
    attempts: int
    error_code: str | None
    error_message: str | None
    updated_at: datetime


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
    present = or_(*(table.outcome == literal_column(f"'{v}'") for v in PRESENT))
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


_UPSERT_BATCH = DriverBatch(
    LedgerEntry.__table__,  # type: ignore[attr-defined]
    tuple(LedgerRow.__annotations__),
    _ledger_upsert,
)


def upsert_ledger(session: Session, *, rows: Sequence[LedgerRow]) -> None:
    """Insert or update ledger entries keyed by (segment, remote_path), one batch per call."""
    _UPSERT_BATCH.execute(session, rows)


def count_unlabelled(session: Session, *, job_id: str) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(LedgerEntry)
            .where(
                LedgerEntry.job_id == job_id,
                col(LedgerEntry.label_key).is_(None),
                col(LedgerEntry.outcome).in_(PRESENT),
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
            col(LedgerEntry.outcome).in_(PRESENT),
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
