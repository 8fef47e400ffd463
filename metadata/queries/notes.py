"""Job notes: keys a job sets aside by kind (delete candidates, changed labels, rejected
rows, ...): added, cleared, checked, counted, paged. Helpers take a session and keyword
arguments; none commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, insert
from sqlmodel import Session, col, select

from metadata.models import JobNote


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
