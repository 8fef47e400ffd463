"""A job's progress: objects and bytes done of the total, the recent rate, the ETA and the
throughput over time, from the job row and the update times of its ledger entries.

The math (`bucket_width`, `dense_series`, `recent_rate`, `eta_seconds`, `compute`) is pure;
`measure` runs the two queries it needs and hands their rows to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from importer.context import ImportContext
from metadata.models import ImportJob, JobState
from metadata.queries import jobs
from metadata.queries import ledger as ledger_q

# The throughput series has at most this many points, whatever the job's length.
MAX_POINTS = 120
_NICE_WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
# The rate is taken over at least this many recent seconds (and at least three buckets).
RATE_WINDOW = 30.0


@dataclass(frozen=True)
class Bucket:
    """Ledger entries of the job that finished in [start, start + width): all of them,
    the bytes they hold (not of deletions) and how many failed."""

    start: float  # Unix seconds, a multiple of the width
    objects: int
    bytes: int
    failed: int = 0


@dataclass(frozen=True)
class JobFigures:
    """What the progress needs of the job row (and the ledger's counts of it)."""

    state: str
    run: int
    listing_done: bool
    dry_run: bool
    deletions_held: bool  # review_reason set: the planned deletions will not happen
    listed: int
    bytes_listed: int
    planned: int
    unchanged: int
    relabel_planned: int
    delete_planned: int
    done: int  # copied + registered + skipped (unchanged too) + relabelled + deleted + failed
    failed: int


@dataclass(frozen=True)
class RunWork:
    """The shards of the current run: their objects and, from the listing, bytes."""

    objects: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Progress:
    state: str
    run: int
    listing_done: bool
    objects_listed: int
    objects_total: int | None  # None until listing ends
    objects_done: int
    bytes_listed: int
    bytes_total: int | None  # None until listing ends, or when sizes are not known ahead
    bytes_done: int
    failed: int
    percent: float | None
    objects_per_second: float
    bytes_per_second: float
    eta_seconds: float | None  # None while the total or the rate is unknown
    rate_window_seconds: float
    bucket_seconds: int
    series: tuple[Bucket, ...]
    as_of: float  # Unix seconds


def bucket_width(span: float, *, max_points: int = MAX_POINTS) -> int:
    """The smallest round width (seconds) that cuts `span` seconds in at most `max_points`."""
    for width in _NICE_WIDTHS:
        if span / width <= max_points:
            return width
    return math.ceil(span / max_points / 86400) * 86400


def dense_series(buckets: list[Bucket], *, since: float, until: float, width: int) -> list[Bucket]:
    """The buckets from the one holding `since` to the one holding `until`, empty ones filled
    in (so a chart's x axis is time)."""
    by_start = {b.start: b for b in buckets}
    first = math.floor(since / width) * width
    last = math.floor(max(until, since) / width) * width
    count = int((last - first) // width) + 1
    starts = [first + i * width for i in range(count)]
    extra = [b for b in buckets if b.start < first or b.start > last]  # clocks out of step
    return sorted(
        [by_start.get(float(s), Bucket(start=float(s), objects=0, bytes=0)) for s in starts]
        + extra,
        key=lambda b: b.start,
    )


def recent_rate(
    buckets: list[Bucket], *, now: float, since: float, width: int, window: float = RATE_WINDOW
) -> tuple[float, float, float]:
    """(objects/s, bytes/s, seconds measured) over the last `window` seconds (at least three
    buckets, whole ones) and never before `since`, the run's start."""
    window = max(window, 3.0 * width)
    first = math.floor(max(now - window, since) / width) * width
    start = max(first, since)
    span = max(now - start, 1.0)  # a job a moment old: no division by almost nothing
    recent = [b for b in buckets if first <= b.start <= now]
    objects = sum(b.objects for b in recent)
    size = sum(b.bytes for b in recent)
    return objects / span, size / span, span


def eta_seconds(remaining: int | None, rate: float) -> float | None:
    """Seconds left at `rate` objects/s; None when the total or the rate is unknown."""
    if remaining is None:
        return None
    if remaining <= 0:
        return 0.0
    if rate <= 0:
        return None
    return remaining / rate


def objects_total(job: JobFigures, work: RunWork) -> int | None:
    """The objects this run has to settle, known once listing ends: a first run's planned
    copies, unchanged objects, relabels and deletions (unless held back); a retry's shards."""
    if not job.listing_done:
        return None
    if job.run > 1:
        return work.objects
    deletions = 0 if job.deletions_held else job.delete_planned
    return job.planned + job.unchanged + job.relabel_planned + deletions


def compute(
    job: JobFigures,
    *,
    work: RunWork,
    buckets: list[Bucket],
    since: float,
    now: float,
    width: int,
) -> Progress:
    """The progress of `job` at `now` (its end, once it ended) from its ledger `buckets`
    of `width` seconds since the run started at `since`."""
    final = JobState(job.state).is_final
    series = dense_series(buckets, since=since, until=now, width=width)
    # A retry counts only what it touched; a first run counts the ledger's outcomes.
    done = sum(b.objects for b in buckets) if job.run > 1 else job.done
    total = objects_total(job, work)
    if total is not None and (final and job.dry_run):
        total = done  # a dry run settles nothing: it only counted
    if total is not None:
        total = max(total, done)
    bytes_done = sum(b.bytes for b in buckets)
    bytes_total: int | None = None
    if job.listing_done and (work.bytes > 0 or work.objects == 0):
        bytes_total = max(work.bytes, bytes_done)
    if final:
        # The rate of a job that ended: its average over the run.
        objects_rate, bytes_rate, span = recent_rate(
            buckets, now=now, since=since, width=width, window=max(now - since, 0.0)
        )
    else:
        objects_rate, bytes_rate, span = recent_rate(buckets, now=now, since=since, width=width)
    remaining = None if total is None else total - done
    percent = None
    if total is not None:
        percent = 100.0 if total == 0 else round(100.0 * done / total, 2)
    return Progress(
        state=job.state,
        run=job.run,
        listing_done=job.listing_done,
        objects_listed=job.listed,
        objects_total=total,
        objects_done=done,
        bytes_listed=job.bytes_listed,
        bytes_total=bytes_total,
        bytes_done=bytes_done,
        failed=job.failed,
        percent=percent,
        objects_per_second=round(objects_rate, 3),
        bytes_per_second=round(bytes_rate, 1),
        eta_seconds=0.0 if final else _rounded(eta_seconds(remaining, objects_rate)),
        rate_window_seconds=round(span, 3),
        bucket_seconds=width,
        series=tuple(series),
        as_of=now,
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def measure(
    ctx: ImportContext, job: ImportJob, counts: ledger_q.JobCounts, *, now: datetime | None = None
) -> Progress:
    """The job's progress from its row, its ledger `counts` (`service.job_progress`) and
    its ledger rows' update times."""
    moment = (now or datetime.now(UTC)).timestamp()
    final = JobState(job.state).is_final
    with ctx.db.uow() as uow:
        s = uow.session
        started = job.started_at or job.created_at
        if job.run > 1:  # a retry: from its first shard (none yet: it starts now)
            started = jobs.run_started_at(s, job_id=job.id, run=job.run) or datetime.fromtimestamp(
                moment, UTC
            )
        since = started.timestamp()
        end = job.finished_at.timestamp() if final and job.finished_at else moment
        width = bucket_width(max(end - since, 0.0))
        rows = jobs.ledger_throughput(
            s, job_id=job.id, since=datetime.fromtimestamp(since, UTC), bucket_seconds=width
        )
        work_objects, work_bytes = jobs.run_work(s, job_id=job.id, run=job.run)
    figures = JobFigures(
        state=job.state,
        run=job.run,
        listing_done=job.listing_done,
        dry_run=bool(job.manifest.get("options", {}).get("dry_run")),
        deletions_held=job.review_reason is not None,
        listed=job.listed,
        bytes_listed=job.bytes_listed,
        planned=job.planned,
        unchanged=job.unchanged,
        relabel_planned=job.relabel_planned,
        delete_planned=job.delete_planned,
        done=counts.copied
        + counts.registered
        + counts.skipped
        + counts.relabelled
        + counts.deleted
        + counts.failed,
        failed=counts.failed,
    )
    buckets = [
        Bucket(start=float(start * width), objects=n, bytes=size, failed=failed)
        for start, n, size, failed in rows
    ]
    return compute(
        figures,
        work=RunWork(objects=work_objects, bytes=work_bytes),
        buckets=buckets,
        since=since,
        now=max(end, since),
        width=width,
    )
