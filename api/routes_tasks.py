"""/v1/imports/{id}/tasks: the tasks of one job of the caller's workspace — its planning and
each shard's copy, with state, attempts, the task holding it and when — as the job page
shows them. Flower shows every workspace's tasks (and can revoke them): operators only."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from api.deps import ContainerDep, PageDep, WorkspaceDep
from metadata import job_tasks
from metadata.queries import jobs

router = APIRouter(prefix="/v1/imports", tags=["imports"])


class TaskPublic(BaseModel):
    kind: str = Field(description='"plan" (listing the source), "copy" or "delete" (a shard)')
    seq: int | None = Field(description="The shard's number in its job; null for the planning")
    run: int
    state: job_tasks.TaskState = Field(
        description="queued (waiting for a worker), running, lost (its worker went silent: "
        "it is sent again), done, stopped (the job ended first)"
    )
    attempts: int | None = Field(description="Times a worker took it (null: not counted)")
    task_id: str | None = Field(description="The task that holds it, or held it last")
    objects: int
    bytes: int
    sent_at: datetime | None = Field(description="When it was last sent to the workers")
    heartbeat_at: datetime | None = Field(description="Its worker's last heartbeat")
    finished_at: datetime | None
    error: str | None


class JobTasks(BaseModel):
    job_id: str
    planning: TaskPublic
    shards_total: int
    counts: dict[str, int] = Field(description="Shards in each state")
    items: list[TaskPublic] = Field(description="Shards, in order, one page of them")
    offset: int
    limit: int
    next_offset: int | None


def _public(row: job_tasks.TaskRow) -> TaskPublic:
    return TaskPublic(
        kind=row.kind,
        seq=row.seq,
        run=row.run,
        state=row.state,
        attempts=row.attempts,
        task_id=row.task_id,
        objects=row.objects,
        bytes=row.bytes,
        sent_at=row.sent_at,
        heartbeat_at=row.heartbeat_at,
        finished_at=row.finished_at,
        error=row.error,
    )


@router.get("/{job_id}/tasks", response_model=JobTasks)
def import_tasks(
    job_id: str, workspace_id: WorkspaceDep, container: ContainerDep, page: PageDep
) -> JobTasks:
    offset, limit = page
    lease = timedelta(seconds=container.settings.lease_seconds)
    with container.db.uow() as uow:
        s = uow.session
        job = jobs.get_job(s, workspace_id=workspace_id, job_id=job_id)
        if job is None:
            raise HTTPException(404, f"import job {job_id!r} does not exist")
        rows = job_tasks.shard_tasks(s, job=job, lease=lease, offset=offset, limit=limit + 1)
        counts = job_tasks.shard_task_counts(s, job=job, lease=lease)
    return JobTasks(
        job_id=job.id,
        planning=_public(job_tasks.planning_task(job, lease=lease)),
        shards_total=sum(counts.values()),
        counts=counts,
        items=[_public(r) for r in rows[:limit]],
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(rows) > limit else None,
    )
