"""Schedules and their runs: found, listed, counted, locked, deleted; the jobs a schedule
started. Helpers take a session and keyword arguments; none commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from metadata.models import ImportJob, Schedule, ScheduleRun


def get_schedule(session: Session, *, workspace_id: str, name: str) -> Schedule | None:
    return session.exec(
        select(Schedule).where(Schedule.workspace_id == workspace_id, Schedule.name == name)
    ).first()


def lock_schedule(session: Session, *, schedule_id: str) -> Schedule | None:
    """The schedule row, locked until the transaction ends (PostgreSQL; SQLite's BEGIN
    IMMEDIATE already serializes writers): claims of one schedule are decided in turn."""
    return session.exec(
        select(Schedule).where(Schedule.id == schedule_id).with_for_update()
    ).first()


def list_schedules(
    session: Session, *, workspace_id: str, offset: int = 0, limit: int | None = None
) -> Sequence[Schedule]:
    query = (
        select(Schedule)
        .where(Schedule.workspace_id == workspace_id)
        .order_by(col(Schedule.name))
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    return session.exec(query).all()


def count_schedules(session: Session, *, workspace_id: str) -> int:
    return session.exec(
        select(func.count()).select_from(Schedule).where(Schedule.workspace_id == workspace_id)
    ).one()


def enabled_schedules(session: Session) -> Sequence[Schedule]:
    """Every workspace's enabled schedules: what a beat watches."""
    return session.exec(select(Schedule).where(Schedule.enabled == True)).all()  # noqa: E712


def delete_schedule(session: Session, *, schedule_id: str) -> None:
    """The schedule and its runs; the jobs it started stay (with its id)."""
    session.execute(delete(ScheduleRun).where(col(ScheduleRun.schedule_id) == schedule_id))
    session.execute(delete(Schedule).where(col(Schedule.id) == schedule_id))


def lock_run(session: Session, *, run_id: str) -> ScheduleRun | None:
    return session.exec(
        select(ScheduleRun).where(ScheduleRun.id == run_id).with_for_update()
    ).first()


def list_runs(
    session: Session, *, schedule_id: str, offset: int, limit: int
) -> Sequence[tuple[ScheduleRun, ImportJob | None]]:
    """The schedule's runs, newest first, each with the job it started (if any)."""
    rows = session.exec(
        select(ScheduleRun, ImportJob)
        .join(ImportJob, col(ImportJob.id) == col(ScheduleRun.job_id), isouter=True)
        .where(ScheduleRun.schedule_id == schedule_id)
        .order_by(col(ScheduleRun.occurrence).desc(), col(ScheduleRun.created_at).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return [(run, job) for run, job in rows]


def latest_job(session: Session, *, schedule_id: str) -> ImportJob | None:
    """The last job the schedule started."""
    return session.exec(
        select(ImportJob)
        .where(ImportJob.schedule_id == schedule_id)
        .order_by(col(ImportJob.created_at).desc())
        .limit(1)
    ).first()


def unrecorded_job(session: Session, *, run: ScheduleRun) -> ImportJob | None:
    """A job of the run's schedule, started since the run was claimed, that no run records:
    the one this run submitted before its task was interrupted."""
    recorded = select(ScheduleRun.job_id).where(
        ScheduleRun.schedule_id == run.schedule_id, col(ScheduleRun.job_id).is_not(None)
    )
    return session.exec(
        select(ImportJob)
        .where(
            ImportJob.schedule_id == run.schedule_id,
            col(ImportJob.created_at) >= run.created_at,
            col(ImportJob.id).not_in(recorded),
        )
        .order_by(col(ImportJob.created_at))
        .limit(1)
    ).first()
