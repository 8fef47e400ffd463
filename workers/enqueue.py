"""Sends the import's follow-up tasks by name: the sender needs no task code, only the broker."""

from __future__ import annotations

from celery import Celery

from bayport.settings import Settings


class CeleryEnqueuer:
    def __init__(self, app: Celery) -> None:
        self._app = app

    @classmethod
    def from_settings(cls, settings: Settings) -> CeleryEnqueuer:
        from workers.celery_app import make_celery

        return cls(make_celery(settings))

    def plan_import(self, job_id: str) -> None:
        self._app.send_task("bayport.plan_import", args=[job_id])

    def copy_shard(self, shard_id: str) -> None:
        self._app.send_task("bayport.copy_shard", args=[shard_id])

    def run_schedule(self, run_id: str) -> None:
        self._app.send_task("bayport.run_schedule", args=[run_id])
