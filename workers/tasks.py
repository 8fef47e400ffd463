"""Thin Celery tasks: each takes an id, reloads state from the DB and calls the import logic.

What a task returns, and the message of what it raises, is what Flower shows for it: short
text in the user's words (what was done, or why it failed), never a secret.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from celery import Task
from celery.exceptions import TaskPredicate
from sqlalchemy.exc import OperationalError

from bootstrap import get_container
from importer import drafts, service
from metadata.models import ImportJob, JobState
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
_MAX_REASON = 1000


class TaskFailed(Exception):
    """A task's failure, as Flower shows it and the job records it: what failed and why."""


def reason(exc: BaseException) -> str:
    """`Kind: message`, shortened. A TaskFailed already reads so."""
    if isinstance(exc, TaskFailed):
        return str(exc)
    text = " ".join(str(exc).split())
    said = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return said if len(said) <= _MAX_REASON else said[: _MAX_REASON - 1] + "…"


@contextlib.contextmanager
def _explained() -> Iterator[None]:
    """Re-raise an error as TaskFailed("<Kind>: <message>"): the repr Flower would show
    otherwise hides a StorageError's kind and key. DB connection errors stay as they are:
    Celery retries them (`_RETRY`)."""
    try:
        yield
    except (OperationalError, TaskPredicate):
        raise
    except Exception as exc:
        raise TaskFailed(reason(exc)) from exc


class _PlanTask(Task):
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        # Called once retries are exhausted (or for an error that is not retried).
        service.abandon_planning(get_container().ctx, args[0], f"planning failed: {reason(exc)}")


class _ShardTask(Task):
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        service.abandon_shard(get_container().ctx, args[0], f"shard failed: {reason(exc)}")


class _RunScheduleTask(Task):
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        schedules.abandon_run(get_container().ctx, args[0], f"run failed: {reason(exc)}")


@app.task(name="bayport.plan_import", base=_PlanTask, **_RETRY)
def plan_import(job_id: str) -> str:
    ctx = get_container().ctx
    with _explained():
        service.plan_import(ctx, job_id)
    with ctx.db.uow() as uow:
        return _planned(job_id, uow.session.get(ImportJob, job_id))


def _planned(job_id: str, job: ImportJob | None) -> str:
    """What planning did, e.g. `job X: listed 1000, 2 shards` (and what else a sync decided,
    and how the job ended if it already has)."""
    if job is None:
        return f"job {job_id}: gone"
    said = [f"listed {job.listed}"]
    if job.unchanged:
        said.append(f"{job.unchanged} unchanged")
    if job.delete_planned:
        said.append(f"{job.delete_planned} gone from the source")
    said.append(f"{job.shards_total} shard{'' if job.shards_total == 1 else 's'}")
    if JobState(job.state).is_final:
        said.append(f"job {job.state}")
    if job.error:
        said.append(job.error)
    return f"job {job_id}: " + ", ".join(said)


@app.task(name="bayport.copy_shard", base=_ShardTask, bind=True, **_RETRY)
def copy_shard(self: Task, shard_id: str) -> str:
    # The task's id owns the shard's lease: a redelivery or retry of this message (its
    # earlier attempt over) takes it over; another message for the shard finds it held.
    with _explained():
        return str(service.copy_shard(get_container().ctx, shard_id, lease_owner=self.request.id))


@app.task(name="bayport.run_schedule", base=_RunScheduleTask, **_RETRY)
def run_schedule(run_id: str) -> str:
    with _explained():
        run = schedules.run_schedule(get_container().ctx, run_id)
    if run is None:
        return f"schedule run {run_id}: gone"
    said = f"schedule run {run_id}: {run.status}"
    if run.job_id:
        said += f", job {run.job_id}"
    return said + (f" ({run.reason})" if run.reason else "")


@app.task(name="bayport.gather_draft", **_RETRY)
def gather_draft(batch: str) -> str:
    """A TensorBay client's registered objects, waiting in a draft's segment, into one job."""
    with _explained():
        return drafts.gather(get_container().ctx, batch)
