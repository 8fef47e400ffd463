"""A job's report and its failures, read from the ledger page by page. Helpers take a
session and keyword arguments; none commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, case, literal, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from metadata.models import LedgerEntry, Outcome


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
