"""The tasks of one import job as its workspace may see them: its planning and each shard's
copy, with what the DB knows of each (state, attempts, the task holding it, when). Read from
the shards' leases, never from the broker or Flower, which show every workspace's tasks.
Helpers take a session and keyword arguments; none commits."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select
from sqlmodel import Session, col

from metadata.models import ImportJob, JobState, Shard, utcnow


class TaskState(enum.StrEnum):
    QUEUED = "queued"  # sent, waiting for a worker (again, after a failed attempt)
    RUNNING = "running"  # a worker holds it and its heartbeat is fresh
    LOST = "lost"  # a worker held it and went silent: it will be sent again
    DONE = "done"
    STOPPED = "stopped"  # the job ended (cancelled, failed) before it ran to the end


@dataclass(frozen=True)
class TaskRow:
    kind: str  # "plan" | "copy" | "delete"
    seq: int | None  # the shard's number; None for the planning
    run: int
    state: TaskState
    attempts: int | None  # deliveries to a worker (not counted for the planning)
    task_id: str | None  # the Celery task that holds (or last held) it
    objects: int
    bytes: int
    sent_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    error: str | None


def _holder_task(lease_owner: str | None) -> str | None:
    """The task id of a lease holder ("<task id>@<host>:<pid>"): the host and process are
    the operator's business."""
    if not lease_owner:
        return None
    return lease_owner.partition("@")[0] or None


def _state(
    *, done: bool, heartbeat_at: datetime | None, stale: datetime, job_final: bool
) -> TaskState:
    if done:
        return TaskState.DONE
    if job_final:
        return TaskState.STOPPED
    if heartbeat_at is None:
        return TaskState.QUEUED
    return TaskState.RUNNING if _aware(heartbeat_at) >= stale else TaskState.LOST


def _aware(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone (UTC, as they were stored)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def planning_task(job: ImportJob, *, lease: timedelta) -> TaskRow:
    final = JobState(job.state).is_final
    if job.listing_done:
        state = TaskState.DONE
    elif final:
        state = TaskState.STOPPED
    elif job.heartbeat_at is None:
        state = TaskState.QUEUED
    else:
        fresh = _aware(job.heartbeat_at) >= utcnow() - lease
        state = TaskState.RUNNING if fresh else TaskState.LOST
    return TaskRow(
        kind="plan",
        seq=None,
        run=job.run,
        state=state,
        attempts=None,
        task_id=None,
        objects=job.listed,
        bytes=job.bytes_listed,
        sent_at=job.created_at,
        heartbeat_at=job.heartbeat_at,
        finished_at=None,
        error=job.error if job.state == JobState.FAILED.value else None,
    )


def shard_tasks(
    session: Session, *, job: ImportJob, lease: timedelta, offset: int, limit: int
) -> Sequence[TaskRow]:
    """The job's shards in order, `limit` from `offset` (their item lists are not read)."""
    stale = utcnow() - lease
    final = JobState(job.state).is_final
    rows = session.execute(  # sqlmodel's select takes at most 4 columns
        select(
            col(Shard.kind),
            col(Shard.seq),
            col(Shard.run),
            col(Shard.done),
            col(Shard.deliveries),
            col(Shard.lease_owner),
            col(Shard.object_count),
            col(Shard.byte_count),
            func.coalesce(col(Shard.dispatched_at), col(Shard.created_at)),
            col(Shard.heartbeat_at),
            col(Shard.finished_at),
        )
        .where(col(Shard.job_id) == job.id)
        .order_by(col(Shard.seq))
        .offset(offset)
        .limit(limit)
    ).all()
    return [
        TaskRow(
            kind=kind,
            seq=seq,
            run=run,
            state=_state(done=done, heartbeat_at=beat, stale=stale, job_final=final),
            attempts=deliveries,
            task_id=_holder_task(owner),
            objects=objects,
            bytes=size,
            sent_at=sent,
            heartbeat_at=beat,
            finished_at=finished,
            error=None,
        )
        for kind, seq, run, done, deliveries, owner, objects, size, sent, beat, finished in rows
    ]


def shard_task_counts(session: Session, *, job: ImportJob, lease: timedelta) -> dict[str, int]:
    """How many of the job's shards are in each state (every state named, 0 included)."""
    stale = utcnow() - lease
    counts = {state.value: 0 for state in TaskState}
    heartbeat = col(Shard.heartbeat_at)
    state = case(
        (col(Shard.done), TaskState.DONE.value),
        (heartbeat.is_(None), TaskState.QUEUED.value),
        (heartbeat >= stale, TaskState.RUNNING.value),
        else_=TaskState.LOST.value,
    )
    rows = session.execute(
        select(state, func.count()).where(col(Shard.job_id) == job.id).group_by(state)
    ).all()
    final = JobState(job.state).is_final
    for name, count in rows:
        if final and name != TaskState.DONE.value:
            name = TaskState.STOPPED.value
        counts[name] += count
    return counts
