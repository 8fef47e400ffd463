"""Metrics: what workers count (retries by error kind, task durations) goes to Redis, shared by
every worker process and machine; the API's /metrics adds the DB's job and object counts and
the queue depth at scrape time, in Prometheus' text format.

Object and byte counters come from the jobs (frozen counts of ended jobs, the ledger's live
counts of running ones), so they match the ledger exactly rather than approximately.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import Session, col, select

from bayport.settings import Settings
from importer.ports import MetricsSink, NullMetrics
from metadata.db import Database
from metadata.models import FINAL_STATES, Dataset, ImportJob, JobState, StorageConfig
from metadata.queries import ledger as ledger_q
from metadata.queries.ledger import JobCounts

if TYPE_CHECKING:  # redis is imported only where metrics go to it
    from redis.client import Pipeline

log = logging.getLogger("bayport.metrics")

# Task durations, seconds: from a tiny plan to a shard of large objects.
BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
OUTCOMES = ("copied", "registered", "skipped", "relabelled", "deleted", "failed")


class RedisMetrics:
    """Counters in Redis hashes under `<namespace>:metrics:*`. Never in the way: a Redis
    that does not answer turns recording off for a while and the work goes on."""

    def __init__(self, url: str, namespace: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.prefix = f"{namespace}:metrics"
        self._off_until = 0.0
        self._lock = threading.Lock()

    def _run(self, fill: Callable[[Pipeline], object]) -> None:
        if time.monotonic() < self._off_until:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            fill(pipe)
            pipe.execute()
        except Exception as exc:  # metrics must never fail a copy
            with self._lock:
                self._off_until = time.monotonic() + 30.0
            log.warning("metrics: Redis did not answer (%s); not recording for 30 s", exc)

    def retry(self, kind: str) -> None:
        self._run(lambda p: p.hincrby(f"{self.prefix}:retries", kind, 1))

    def resent(self, what: str, n: int) -> None:
        self._run(lambda p: p.hincrby(f"{self.prefix}:resent", what, n))

    def task_finished(self, task: str, seconds: float, *, failed: bool) -> None:
        def fill(p: Pipeline) -> None:
            p.hincrbyfloat(f"{self.prefix}:task_seconds_sum", task, seconds)
            p.hincrby(f"{self.prefix}:task_count", task, 1)
            if failed:
                p.hincrby(f"{self.prefix}:task_failures", task, 1)
            for bound in BUCKETS:
                if seconds <= bound:
                    p.hincrby(f"{self.prefix}:task_bucket", f"{task}|{bound}", 1)

        self._run(fill)

    def read(self) -> dict[str, dict[str, str]]:
        """Every hash, decoded (for the collector)."""
        names = (
            "retries",
            "resent",
            "task_seconds_sum",
            "task_count",
            "task_failures",
            "task_bucket",
        )
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(f"{self.prefix}:{name}")
        values = pipe.execute()
        return {
            name: {k.decode(): v.decode() for k, v in value.items()}
            for name, value in zip(names, values, strict=True)
        }

    def queue_depth(self, queue: str) -> int:
        depth: Any = self._client.llen(queue)  # (redis' types allow an async client)
        return int(depth)


def sink_for(settings: Settings) -> MetricsSink:
    url = settings.resolved_metrics_redis_url
    return RedisMetrics(url, settings.metrics_namespace) if url else NullMetrics()


class BayportCollector(Collector):
    """Collected at each scrape: jobs by state, objects and bytes by provider pair, retries
    by error kind, task durations, queue depth."""

    def __init__(self, db: Database, sink: MetricsSink, queue: str) -> None:
        self.db = db
        self.sink = sink
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        yield from self._from_db()
        if isinstance(self.sink, RedisMetrics):
            try:
                yield from self._from_redis(self.sink)
            except Exception as exc:
                log.warning("metrics: Redis did not answer: %s", exc)

    def _from_db(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("bayport_jobs", "Import jobs by state", labels=["state"])
        objects = CounterMetricFamily(
            "bayport_objects",
            "Objects handled by import jobs, by outcome and provider pair",
            labels=["source_provider", "dest_provider", "outcome"],
        )
        copied_bytes = CounterMetricFamily(
            "bayport_bytes_copied",
            "Bytes copied by import jobs, by provider pair",
            labels=["source_provider", "dest_provider"],
        )
        with self.db.uow() as uow:
            s = uow.session
            by_state = dict(
                s.exec(select(ImportJob.state, func.count()).group_by(col(ImportJob.state))).all()
            )
            for state in JobState:
                jobs.add_metric([state.value], float(by_state.get(state.value, 0)))
            totals: dict[tuple[str, str], dict[str, float]] = {}
            for job, src, dst in self._jobs_with_providers(s):
                if JobState(job.state) in FINAL_STATES:
                    counts: ImportJob | JobCounts = job
                elif job.state == JobState.QUEUED.value:
                    continue
                else:
                    live = ledger_q.job_counts(s, job_id=job.id)
                    counts = dataclasses.replace(live, skipped=live.skipped + job.unchanged)
                pair = totals.setdefault((src, dst), dict.fromkeys((*OUTCOMES, "bytes"), 0.0))
                for outcome in OUTCOMES:
                    pair[outcome] += getattr(counts, outcome)
                pair["bytes"] += counts.bytes_copied
        for (src, dst), values in sorted(totals.items()):
            for outcome in OUTCOMES:
                objects.add_metric([src, dst, outcome], values[outcome])
            copied_bytes.add_metric([src, dst], values["bytes"])
        yield jobs
        yield objects
        yield copied_bytes

    @staticmethod
    def _jobs_with_providers(s: Session) -> Iterator[tuple[ImportJob, str, str]]:
        """Every non-dry-run job with its source and destination provider ("default": Bayport's
        own storage). Ended jobs' counts are read from their row, not the ledger."""
        src = StorageConfig.__table__.alias("src")  # type: ignore[attr-defined]
        dst = StorageConfig.__table__.alias("dst")  # type: ignore[attr-defined]
        query = (
            select(ImportJob, src.c.provider, dst.c.provider)
            .join(src, src.c.id == ImportJob.source_config_id)
            .join(Dataset, col(Dataset.id) == ImportJob.dataset_id)
            .outerjoin(dst, dst.c.id == Dataset.config_id)
        )
        for job, source, dest in s.exec(query):
            if job.manifest.get("options", {}).get("dry_run"):
                continue
            yield job, source, dest or "default"

    def _from_redis(self, sink: RedisMetrics) -> Iterator[Metric]:
        data = sink.read()
        retries = CounterMetricFamily(
            "bayport_storage_retries",
            "Storage calls retried after a transient error, by error kind",
            labels=["kind"],
        )
        for kind, n in sorted(data["retries"].items()):
            retries.add_metric([kind], float(n))
        yield retries
        resent = CounterMetricFamily(
            "bayport_recovery_resends",
            "Work the recovery sweep sent again (its worker died, its message was lost)",
            labels=["what"],
        )
        for what, n in sorted(data["resent"].items()):
            resent.add_metric([what], float(n))
        yield resent
        durations = HistogramMetricFamily(
            "bayport_task_duration_seconds", "Celery task run time", labels=["task"]
        )
        failures = CounterMetricFamily(
            "bayport_task_failures", "Celery tasks that raised", labels=["task"]
        )
        for task, count in sorted(data["task_count"].items()):
            cumulative = [
                (str(b), float(data["task_bucket"].get(f"{task}|{b}", 0))) for b in BUCKETS
            ]
            cumulative.append(("+Inf", float(count)))
            durations.add_metric(
                [task], cumulative, sum_value=float(data["task_seconds_sum"].get(task, 0))
            )
            failures.add_metric([task], float(data["task_failures"].get(task, 0)))
        yield durations
        yield failures
        depth = GaugeMetricFamily(
            "bayport_queue_depth", "Tasks waiting in the broker queue", labels=["queue"]
        )
        depth.add_metric([self.queue], float(sink.queue_depth(self.queue)))
        yield depth
