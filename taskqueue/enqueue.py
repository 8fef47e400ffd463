"""Sends the import's follow-up tasks by name: the sender needs no task code, only the broker.

Each message carries ids only. Its display name (Celery's `shadow`, which the worker uses in
its logs and task events, so in Flower) says what the task is about: a job's planning and
every shard of it read `... job=<id>`, so searching Flower for a job id finds all its tasks.

A planning or a shard whose message cannot be sent (the broker restarting) is not an error:
the DB already holds it, and the workers' recovery sweep sends it once the broker is back
(importer/recovery.py).
"""

from __future__ import annotations

import logging

from celery import Celery
from kombu.exceptions import OperationalError as BrokerUnavailable

log = logging.getLogger("bayport.enqueue")


def plan_title(job_id: str) -> str:
    return f"bayport.plan_import job={job_id}"


def shard_title(shard_id: str, *, job_id: str | None, seq: int | None) -> str:
    """`... job=<id> shard=<seq>`; a sender that does not know the seq names the shard id."""
    job = f" job={job_id}" if job_id is not None else ""
    shard = f"shard={seq}" if seq is not None else f"shard_id={shard_id}"
    return f"bayport.copy_shard{job} {shard}"


class CeleryEnqueuer:
    def __init__(self, app: Celery) -> None:
        self._app = app

    def plan_import(self, job_id: str) -> None:
        title = plan_title(job_id)
        self._send("bayport.plan_import", job_id, title)

    def copy_shard(
        self, shard_id: str, *, job_id: str | None = None, seq: int | None = None
    ) -> None:
        title = shard_title(shard_id, job_id=job_id, seq=seq)
        self._send("bayport.copy_shard", shard_id, title)

    def run_schedule(self, run_id: str) -> None:
        # Its one argument, the run id, says what it is about; its result names the job.
        self._app.send_task("bayport.run_schedule", args=[run_id])

    def gather_draft(self, batch: str, *, delay: float = 0.0) -> None:
        title = f"bayport.gather_draft {batch}"
        try:
            self._app.send_task(
                "bayport.gather_draft", args=[batch], shadow=title, countdown=delay or None
            )
        except BrokerUnavailable as exc:
            # The objects wait in the DB: a commit of the draft queues their gathering again.
            log.warning("%s not sent (the broker: %s)", title, exc)

    def _send(self, task: str, ident: str, title: str) -> None:
        try:
            self._app.send_task(task, args=[ident], shadow=title)
        except BrokerUnavailable as exc:
            log.warning("%s not sent (the broker: %s); the recovery sweep will send it", title, exc)
