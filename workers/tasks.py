"""Thin Celery tasks: each takes an id, reloads state from the DB and calls the import logic."""

from __future__ import annotations

from typing import Any

from celery import Task
from sqlalchemy.exc import OperationalError

from bayport.wiring import get_container
from importer import service
from scheduler import service as schedules
from workers.celery_app import app

# A lost DB connection (a restart, a failover) retries the whole task later; the import
# logic is idempotent, so a rerun picks up where the ledger says it stopped.
_RETRY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 20,
}


class _PlanTask(Task):
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        # Called once retries are exhausted (or for an error that is not retried).
        service.abandon_planning(get_container().ctx, args[0], f"planning failed: {exc!r}")


class _ShardTask(Task):
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        service.abandon_shard(get_container().ctx, args[0], f"shard failed: {exc!r}")


class _RunScheduleTask(Task):
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        schedules.abandon_run(get_container().ctx, args[0], f"run failed: {exc!r}")


@app.task(name="bayport.plan_import", base=_PlanTask, **_RETRY)
def plan_import(job_id: str) -> str:
    service.plan_import(get_container().ctx, job_id)
    return f"planned job {job_id}"


@app.task(name="bayport.copy_shard", base=_ShardTask, **_RETRY)
def copy_shard(shard_id: str) -> str:
    return str(service.copy_shard(get_container().ctx, shard_id))


@app.task(name="bayport.run_schedule", base=_RunScheduleTask, **_RETRY)
def run_schedule(run_id: str) -> str:
    run = schedules.run_schedule(get_container().ctx, run_id)
    return f"schedule run {run_id}: {run.status if run else 'gone'}"
