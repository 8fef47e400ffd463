"""Schedule use cases: keep schedules, decide which occurrence is due, claim it once, run it.

Entry points (the API, the beat, the `bayport.run_schedule` task) call these with an
ImportContext; nothing here knows Celery. The rules:

- **Due**: the latest occurrence at or before now that is after the schedule's last claimed
  occurrence and after its creation and last change — a beat that was down for three nights
  fires once, for the latest missed occurrence.
- **Exactly once**: an occurrence is claimed by inserting its ScheduleRun; the unique
  (schedule_id, occurrence) key and the schedule's row lock let one of any number of beats
  win, and only the winner enqueues the run.
- **Skip if running**: a run whose schedule's previous job has not ended starts nothing and
  says why (as does one that finds another job on the segment).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from importer.context import ImportContext
from importer.errors import Conflict, ImportServiceError, Invalid, NotFound
from importer.jobs import submit_import
from importer.manifest import NAME_PATTERN, ImportManifest
from metadata.db import Database
from metadata.models import ImportJob, JobState, Schedule, ScheduleRun, utcnow
from metadata.queries import datasets, storage_configs
from metadata.queries import schedules as queries
from scheduler.cron import CronSchedule, parse_cron, parse_timezone, shortest_interval

log = logging.getLogger("bayport.scheduler")

Trigger = Literal["cron", "manual"]
# A run is claimed, then starting while its task decides, then ends in one of RUN_FINAL.
CLAIMED, STARTING = "claimed", "starting"
SUBMITTED, SKIPPED, FAILED = "submitted", "skipped", "failed"
RUN_FINAL = frozenset({SUBMITTED, SKIPPED, FAILED})


# --- the rules (pure) -----------------------------------------------------------------


def cron_of(schedule: Schedule) -> CronSchedule:
    return CronSchedule(schedule.cron, schedule.timezone)


def floor_of(schedule: Schedule) -> datetime:
    """Occurrences at or before this never fire: the last one claimed, the creation, the
    last change (a re-enabled or re-timed schedule does not catch up on the past)."""
    moments = [schedule.created_at, schedule.updated_at]
    if schedule.last_occurrence is not None:
        moments.append(schedule.last_occurrence)
    return max(moments)


def due_occurrence(schedule: Schedule, now: datetime) -> datetime | None:
    """The occurrence to fire now, if any: the latest one at or before `now` after the
    schedule's floor. However many were missed, only the latest is due."""
    if not schedule.enabled:
        return None
    latest = cron_of(schedule).latest(now)
    return latest if latest > floor_of(schedule) else None


def next_occurrence(schedule: Schedule, now: datetime) -> datetime | None:
    """When the enabled schedule fires next (None when disabled)."""
    return cron_of(schedule).next(now) if schedule.enabled else None


# --- keeping schedules ----------------------------------------------------------------


def _check_cron(cron: str, timezone: str, *, min_interval: float) -> tuple[str, str]:
    """The expression normalized and the zone, checked; a cron firing more often than every
    `min_interval` seconds is refused (each occurrence starts an import)."""
    try:
        expression = parse_cron(cron)
    except ValueError as exc:
        raise Invalid(str(exc), field="cron") from None
    try:
        zone = parse_timezone(timezone)
    except ValueError as exc:
        raise Invalid(str(exc), field="timezone") from None
    try:
        CronSchedule(expression, zone).next(utcnow())
    except ValueError:
        raise Invalid(f"cron {expression!r} never occurs", field="cron") from None
    shortest = shortest_interval(expression)
    if shortest < min_interval:
        raise Invalid(
            f"cron {expression!r} fires every {shortest:g} s at times: schedules may fire at "
            f"most every {min_interval:g} s (BAYPORT_SCHEDULE_MIN_INTERVAL_SECONDS)",
            field="cron",
        )
    return expression, zone


def _check_manifest(s: Session, *, workspace_id: str, manifest: ImportManifest) -> None:
    """What submitting would check first: the dataset and the source config exist."""
    if manifest.source.draft is not None:
        raise Invalid(
            "source.draft is for the TensorBay API's own jobs, not a schedule",
            field="manifest.source.draft",
        )
    if datasets.get_dataset(s, workspace_id=workspace_id, name=manifest.dataset) is None:
        raise NotFound(f"dataset {manifest.dataset!r} does not exist", field="manifest.dataset")
    if (
        storage_configs.get_config(s, workspace_id=workspace_id, name=manifest.source.config_name)
        is None
    ):
        raise NotFound(
            f"storage config {manifest.source.config_name!r} does not exist",
            field="manifest.source.config_name",
        )


def _own(s: Session, *, workspace_id: str, name: str) -> Schedule:
    schedule = queries.get_schedule(s, workspace_id=workspace_id, name=name)
    if schedule is None:
        raise NotFound(f"schedule {name!r} does not exist")
    return schedule


def create_schedule(
    ctx: ImportContext,
    *,
    workspace_id: str,
    name: str,
    manifest: ImportManifest,
    cron: str,
    timezone: str = "UTC",
    enabled: bool = True,
) -> Schedule:
    if not re.fullmatch(NAME_PATTERN, name):
        raise Invalid(f"schedule name {name!r} does not match {NAME_PATTERN}", field="name")
    cron, timezone = _check_cron(
        cron, timezone, min_interval=ctx.settings.schedule_min_interval_seconds
    )
    with ctx.db.uow() as uow:
        s = uow.session
        if queries.get_schedule(s, workspace_id=workspace_id, name=name) is not None:
            raise Conflict(f"schedule {name!r} already exists", field="name")
        cap = ctx.settings.max_schedules_per_workspace
        if queries.count_schedules(s, workspace_id=workspace_id) >= cap:
            raise Conflict(
                f"this workspace has {cap} schedules, the most it may have "
                "(BAYPORT_MAX_SCHEDULES_PER_WORKSPACE): delete one first"
            )
        _check_manifest(s, workspace_id=workspace_id, manifest=manifest)
        now = utcnow()
        schedule = Schedule(
            workspace_id=workspace_id,
            name=name,
            manifest=manifest.model_dump(mode="json"),
            cron=cron,
            timezone=timezone,
            enabled=enabled,
            created_at=now,
            updated_at=now,
        )
        s.add(schedule)
        try:
            uow.commit()
        except IntegrityError:  # created by a concurrent request since the check
            raise Conflict(f"schedule {name!r} already exists", field="name") from None
        return schedule


def list_schedules(
    ctx: ImportContext, *, workspace_id: str, offset: int = 0, limit: int | None = None
) -> Sequence[Schedule]:
    """The workspace's schedules by name, `limit` of them from `offset` (None: all)."""
    with ctx.db.uow() as uow:
        return queries.list_schedules(
            uow.session, workspace_id=workspace_id, offset=offset, limit=limit
        )


def get_schedule(ctx: ImportContext, *, workspace_id: str, name: str) -> Schedule:
    with ctx.db.uow() as uow:
        return _own(uow.session, workspace_id=workspace_id, name=name)


def update_schedule(
    ctx: ImportContext,
    *,
    workspace_id: str,
    name: str,
    enabled: bool | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    manifest: ImportManifest | None = None,
) -> Schedule:
    """Change what is given (None: unchanged). Any change restarts the schedule's clock:
    occurrences before it never fire."""
    with ctx.db.uow() as uow:
        s = uow.session
        schedule = _own(s, workspace_id=workspace_id, name=name)
        if cron is not None or timezone is not None:
            schedule.cron, schedule.timezone = _check_cron(
                cron if cron is not None else schedule.cron,
                timezone if timezone is not None else schedule.timezone,
                min_interval=ctx.settings.schedule_min_interval_seconds,
            )
        if manifest is not None:
            _check_manifest(s, workspace_id=workspace_id, manifest=manifest)
            schedule.manifest = manifest.model_dump(mode="json")
        if enabled is not None:
            schedule.enabled = enabled
        schedule.updated_at = utcnow()
        uow.commit()
        return schedule


def delete_schedule(ctx: ImportContext, *, workspace_id: str, name: str) -> None:
    """The schedule and its run history go; the jobs it started stay."""
    with ctx.db.uow() as uow:
        schedule = _own(uow.session, workspace_id=workspace_id, name=name)
        queries.delete_schedule(uow.session, schedule_id=schedule.id)
        uow.commit()


@dataclass(frozen=True)
class RunView:
    run: ScheduleRun
    job: ImportJob | None


def list_runs(
    ctx: ImportContext, *, workspace_id: str, name: str, offset: int = 0, limit: int = 100
) -> list[RunView]:
    """The schedule's runs, newest first, with the jobs they started."""
    with ctx.db.uow() as uow:
        schedule = _own(uow.session, workspace_id=workspace_id, name=name)
        rows = queries.list_runs(uow.session, schedule_id=schedule.id, offset=offset, limit=limit)
        return [RunView(run=run, job=job) for run, job in rows]


# --- claiming occurrences -------------------------------------------------------------


def claim_occurrence(
    db: Database, schedule_id: str, occurrence: datetime, trigger: Trigger = "cron"
) -> ScheduleRun | None:
    """Record the run of `occurrence`, or None when it is not this caller's to run: another
    caller claimed it (the unique key), or — for a cron occurrence — the schedule is gone,
    disabled, or the occurrence is not after its floor or not one of its cron's (a beat
    working from a stale copy of the schedule)."""
    with db.uow() as uow:
        s = uow.session
        schedule = queries.lock_schedule(s, schedule_id=schedule_id)
        if schedule is None:
            return None
        if trigger == "cron":
            if not schedule.enabled or occurrence <= floor_of(schedule):
                return None
            if cron_of(schedule).latest(occurrence) != occurrence:
                return None
            schedule.last_occurrence = occurrence
        run = ScheduleRun(schedule_id=schedule_id, occurrence=occurrence, trigger=trigger)
        s.add(run)
        try:
            uow.commit()
        except IntegrityError:
            return None
        return run


def fire_due(ctx: ImportContext, schedule_id: str, now: datetime) -> ScheduleRun | None:
    """What a beat does when a schedule may be due: read it afresh, claim the due occurrence,
    and — only if this caller won it — enqueue the run (after the claim's commit)."""
    with ctx.db.uow() as uow:
        schedule = uow.session.get(Schedule, schedule_id)
    occurrence = due_occurrence(schedule, now) if schedule is not None else None
    if occurrence is None:
        return None
    run = claim_occurrence(ctx.db, schedule_id, occurrence, "cron")
    if run is not None:
        _send(ctx, run)
    return run


def _send(ctx: ImportContext, run: ScheduleRun) -> None:
    """Enqueue a claimed run; a run the broker refused ends failed, saying so, rather than
    staying claimed for ever."""
    try:
        ctx.enqueue.run_schedule(run.id)
    except Exception as exc:
        _settle(ctx.db, run.id, status=FAILED, reason=f"could not be sent to the workers: {exc}")
        raise


def run_now(ctx: ImportContext, *, workspace_id: str, name: str) -> ScheduleRun:
    """A manual run (enabled or not): claimed for this instant and enqueued."""
    schedule = get_schedule(ctx, workspace_id=workspace_id, name=name)
    run = claim_occurrence(ctx.db, schedule.id, utcnow(), "manual")
    if run is None:
        raise Conflict(f"schedule {name!r} was run at this very instant: try again")
    _send(ctx, run)
    return run


# --- running a claimed occurrence (the task's body) -----------------------------------


def _settle(
    db: Database, run_id: str, *, status: str, job_id: str | None = None, reason: str | None = None
) -> ScheduleRun | None:
    """Record how the run ended, unless it already has (a concurrent redelivery)."""
    with db.uow() as uow:
        run = queries.lock_run(uow.session, run_id=run_id)
        if run is None or run.status in RUN_FINAL:
            return run
        run.status, run.job_id, run.reason = status, job_id, reason
        uow.commit()
    log.info("schedule run %s %s%s", run_id, status, f": {reason}" if reason else "")
    return run


def run_schedule(ctx: ImportContext, run_id: str) -> ScheduleRun | None:
    """Start the job of a claimed run, or record why none was started. Idempotent: a run
    that has ended is left alone, and a run interrupted after submitting its job (found
    `starting`, its job recorded by no run) takes that job instead of submitting another."""
    with ctx.db.uow() as uow:
        s = uow.session
        run = queries.lock_run(s, run_id=run_id)
        if run is None or run.status in RUN_FINAL:
            return run
        resumed = run.status == STARTING
        run.status = STARTING
        schedule = s.get(Schedule, run.schedule_id)
        submitted = queries.unrecorded_job(s, run=run) if resumed else None
        previous = queries.latest_job(s, schedule_id=run.schedule_id)
        uow.commit()
    if schedule is None:
        return _settle(ctx.db, run_id, status=FAILED, reason="the schedule was deleted")
    if submitted is not None:
        return _settle(ctx.db, run_id, status=SUBMITTED, job_id=submitted.id)
    if previous is not None and not JobState(previous.state).is_final:
        reason = f"previous run {previous.id} is still {previous.state}"
        return _settle(ctx.db, run_id, status=SKIPPED, reason=reason)
    try:
        manifest = ImportManifest.model_validate(schedule.manifest)
    except ValidationError as exc:
        reason = f"the schedule's manifest is no longer valid: {exc}"
        return _settle(ctx.db, run_id, status=FAILED, reason=reason)
    try:
        job = submit_import(
            ctx, workspace_id=schedule.workspace_id, manifest=manifest, schedule_id=schedule.id
        )
    except Conflict as exc:  # another job (not this schedule's) holds the segment
        return _settle(ctx.db, run_id, status=SKIPPED, reason=exc.message)
    except ImportServiceError as exc:  # NotFound, Invalid: the manifest no longer fits
        return _settle(ctx.db, run_id, status=FAILED, reason=exc.message)
    return _settle(ctx.db, run_id, status=SUBMITTED, job_id=job.id)


def abandon_run(ctx: ImportContext, run_id: str, reason: str) -> None:
    """The task failed for good (its retries spent): the run ends failed."""
    _settle(ctx.db, run_id, status=FAILED, reason=reason)
