"""Import jobs: found, listed, locked; their pending shards; their progress (throughput from
the ledger, the work of a run). Helpers take a session and keyword arguments; none commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from metadata.models import ImportJob, LedgerEntry, Outcome, Shard

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
