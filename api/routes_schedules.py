"""/v1/schedules: recurring imports (a manifest on a cron in a time zone), run now, run history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ContainerDep, PageDep, WorkspaceDep
from api.schemas import Page
from importer.manifest import NAME_PATTERN, ImportManifest
from metadata.models import Schedule, ScheduleRun, utcnow
from scheduler import service

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])

CRON_HELP = (
    "5 fields (minute hour day-of-month month day-of-week) or 6 with the seconds first "
    "('*/30 * * * * *'), or @hourly/@daily/@weekly/@monthly/@yearly"
)


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    manifest: ImportManifest = Field(description="As for POST /v1/imports")
    cron: str = Field(min_length=1, max_length=200, description=CRON_HELP)
    timezone: str = Field(default="UTC", max_length=64, description="An IANA time zone")
    enabled: bool = True


class ScheduleUpdate(BaseModel):
    """What to change; an omitted field stays as it is."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    cron: str | None = Field(default=None, min_length=1, max_length=200, description=CRON_HELP)
    timezone: str | None = Field(default=None, max_length=64)
    manifest: ImportManifest | None = None


class SchedulePublic(BaseModel):
    name: str
    manifest: dict[str, Any]
    cron: str
    timezone: str
    enabled: bool
    last_occurrence: datetime | None = Field(description="The latest occurrence claimed")
    next_occurrence: datetime | None = Field(description="None while disabled")
    created_at: datetime
    updated_at: datetime


class ScheduleRunPublic(BaseModel):
    id: str
    occurrence: datetime
    trigger: str = Field(description="cron | manual")
    status: str = Field(description="claimed | starting | submitted | skipped | failed")
    reason: str | None = Field(description="Why no job was started (skipped, failed)")
    job_id: str | None
    job_state: str | None = None
    copied: int | None = None
    registered: int | None = None
    skipped: int | None = None
    failed: int | None = None
    relabelled: int | None = None
    deleted: int | None = None
    review_reason: str | None = None
    created_at: datetime


def schedule_public(schedule: Schedule) -> SchedulePublic:
    return SchedulePublic(
        name=schedule.name,
        manifest=schedule.manifest,
        cron=schedule.cron,
        timezone=schedule.timezone,
        enabled=schedule.enabled,
        last_occurrence=schedule.last_occurrence,
        next_occurrence=service.next_occurrence(schedule, utcnow()),
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


def run_public(run: ScheduleRun, job: Any = None) -> ScheduleRunPublic:
    counts: dict[str, Any] = {}
    if job is not None:
        # The job's columns: counts are frozen into them when the job ends.
        counts = {
            "job_state": job.state,
            "copied": job.copied,
            "registered": job.registered,
            "skipped": job.skipped,
            "failed": job.failed,
            "relabelled": job.relabelled,
            "deleted": job.deleted,
            "review_reason": job.review_reason,
        }
    return ScheduleRunPublic(
        id=run.id,
        occurrence=run.occurrence,
        trigger=run.trigger,
        status=run.status,
        reason=run.reason,
        job_id=run.job_id,
        created_at=run.created_at,
        **counts,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SchedulePublic)
def create_schedule(
    body: ScheduleCreate, response: Response, workspace_id: WorkspaceDep, container: ContainerDep
) -> SchedulePublic:
    schedule = service.create_schedule(
        container.ctx,
        workspace_id=workspace_id,
        name=body.name,
        manifest=body.manifest,
        cron=body.cron,
        timezone=body.timezone,
        enabled=body.enabled,
    )
    response.headers["Location"] = f"/v1/schedules/{schedule.name}"
    return schedule_public(schedule)


@router.get("", response_model=list[SchedulePublic])
def list_schedules(
    workspace_id: WorkspaceDep, container: ContainerDep, page: PageDep, response: Response
) -> list[SchedulePublic]:
    """The workspace's schedules by name, a page of them (`offset`, `limit`): a list, as
    before paging; when there are more, the `X-Next-Offset` header says where they go on."""
    offset, limit = page
    schedules = service.list_schedules(
        container.ctx, workspace_id=workspace_id, offset=offset, limit=limit + 1
    )
    if len(schedules) > limit:
        response.headers["X-Next-Offset"] = str(offset + limit)
    return [schedule_public(s) for s in schedules[:limit]]


@router.get("/{name}", response_model=SchedulePublic)
def get_schedule(name: str, workspace_id: WorkspaceDep, container: ContainerDep) -> SchedulePublic:
    return schedule_public(
        service.get_schedule(container.ctx, workspace_id=workspace_id, name=name)
    )


@router.patch("/{name}", response_model=SchedulePublic)
def update_schedule(
    name: str, body: ScheduleUpdate, workspace_id: WorkspaceDep, container: ContainerDep
) -> SchedulePublic:
    schedule = service.update_schedule(
        container.ctx,
        workspace_id=workspace_id,
        name=name,
        enabled=body.enabled,
        cron=body.cron,
        timezone=body.timezone,
        manifest=body.manifest,
    )
    return schedule_public(schedule)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_schedule(name: str, workspace_id: WorkspaceDep, container: ContainerDep) -> Response:
    service.delete_schedule(container.ctx, workspace_id=workspace_id, name=name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/run", status_code=status.HTTP_202_ACCEPTED, response_model=ScheduleRunPublic)
def run_schedule(
    name: str, workspace_id: WorkspaceDep, container: ContainerDep
) -> ScheduleRunPublic:
    run = service.run_now(container.ctx, workspace_id=workspace_id, name=name)
    return run_public(run)


@router.get("/{name}/runs", response_model=Page[ScheduleRunPublic])
def list_runs(
    name: str, workspace_id: WorkspaceDep, container: ContainerDep, page: PageDep
) -> Page[ScheduleRunPublic]:
    offset, limit = page
    views = service.list_runs(
        container.ctx, workspace_id=workspace_id, name=name, offset=offset, limit=limit + 1
    )
    return Page[ScheduleRunPublic](
        items=[run_public(v.run, v.job) for v in views[:limit]],
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(views) > limit else None,
    )
