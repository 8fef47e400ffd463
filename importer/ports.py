"""What the import logic needs from the outside: stores for configs, caps on a job's requests,
and a task queue."""

from __future__ import annotations

from typing import Protocol

from metadata.models import StorageConfig
from storage_adapters.base import ObjectStore


class StoreResolver(Protocol):
    def for_config(self, config: StorageConfig, *, at_bucket_root: bool = False) -> ObjectStore:
        """The store of an authorized storage config (credentials decrypted in memory): its
        keys relative to the config's file_path, or (`at_bucket_root`) bucket keys, as the
        TensorBay API's cloud paths are."""
        ...

    def default_storage(self) -> ObjectStore:
        """Bayport's own storage, for datasets created without a config."""
        ...


class RequestCaps(Protocol):
    def cap(
        self,
        store: ObjectStore,
        *,
        scope: str,
        requests_per_second: float | None = None,
        bytes_per_second: int | None = None,
    ) -> ObjectStore:
        """`store`, its requests held together with those of every other store capped under
        `scope` (a job: `job:<id>`), in every worker process, to at most these rates."""
        ...


class Enqueuer(Protocol):
    """Sends follow-up work. Callers invoke it only after their transaction commits."""

    def plan_import(self, job_id: str) -> None: ...

    def copy_shard(
        self, shard_id: str, *, job_id: str | None = None, seq: int | None = None
    ) -> None:
        """Copy a shard. `job_id` and `seq` (the shard's number in its job) only label the
        task for monitoring (Flower); the task itself takes the shard id alone."""
        ...

    def run_schedule(self, run_id: str) -> None:
        """Start a claimed schedule run (scheduler.service.run_schedule)."""
        ...

    def gather_draft(self, batch: str, *, delay: float = 0.0) -> None:
        """Gather a draft segment's registered objects into a job (importer.drafts.gather),
        `delay` seconds from now at the earliest."""
        ...


class MetricsSink(Protocol):
    """Where workers record what only they see."""

    def retry(self, kind: str) -> None: ...

    def task_finished(self, task: str, seconds: float, *, failed: bool) -> None: ...

    def resent(self, what: str, n: int) -> None:
        """The recovery sweep sent `n` lost pieces of work again ("shard", "planning",
        "finish")."""


class NullMetrics:
    def retry(self, kind: str) -> None:
        pass

    def resent(self, what: str, n: int) -> None:
        pass

    def task_finished(self, task: str, seconds: float, *, failed: bool) -> None:
        pass
