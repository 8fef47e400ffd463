"""The progress math: totals (and the listing state before them), the recent-rate window,
the ETA, the throughput series; and the ledger query behind it on SQLite."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bootstrap import Container
from importer import progress
from importer.progress import Bucket, JobFigures, RunWork
from metadata.models import Dataset, ImportJob, LedgerEntry, Segment, Shard, StorageConfig
from metadata.queries import jobs as jobs_q
from metadata.queries import ledger as ledger_q

T0 = 1_699_999_200.0  # a multiple of every bucket width up to an hour
JOB = JobFigures(
    state="copying",
    run=1,
    listing_done=True,
    dry_run=False,
    deletions_held=False,
    listed=1000,
    bytes_listed=10_000_000,
    planned=900,
    unchanged=50,
    relabel_planned=30,
    delete_planned=20,
    done=0,
    failed=0,
)


def steady(per_second: int, *, seconds: int, start: float = T0, size: int = 1000) -> list[Bucket]:
    return [
        Bucket(start=start + i, objects=per_second, bytes=per_second * size) for i in range(seconds)
    ]


def test_bucket_widths_are_round_and_keep_the_series_short() -> None:
    assert progress.bucket_width(0) == 1
    assert progress.bucket_width(120) == 1
    assert progress.bucket_width(121) == 2
    assert progress.bucket_width(3600) == 30
    assert progress.bucket_width(86400) == 900
    week = progress.bucket_width(7 * 86400)
    assert week % 3600 == 0 and 7 * 86400 / week <= progress.MAX_POINTS
    huge = progress.bucket_width(10_000 * 86400)
    assert huge % 86400 == 0 and 10_000 * 86400 / huge <= progress.MAX_POINTS


def test_while_listing_the_totals_are_unknown_and_the_count_so_far_shows() -> None:
    job = replace(JOB, state="listing", listing_done=False, listed=420, done=100)
    p = progress.compute(
        job, work=RunWork(), buckets=steady(10, seconds=10), since=T0, now=T0 + 10, width=1
    )
    assert (p.objects_total, p.bytes_total, p.percent, p.eta_seconds) == (None, None, None, None)
    assert (p.objects_listed, p.objects_done, p.listing_done) == (420, 100, False)
    assert p.objects_per_second == pytest.approx(10.0)  # the rate is known already


def test_total_is_planned_unchanged_relabels_and_deletions_unless_held() -> None:
    assert progress.objects_total(JOB, RunWork()) == 900 + 50 + 30 + 20
    held = replace(JOB, deletions_held=True)
    assert progress.objects_total(held, RunWork()) == 900 + 50 + 30
    retry = replace(JOB, run=2)
    assert progress.objects_total(retry, RunWork(objects=7, bytes=70)) == 7


def test_rate_is_taken_over_the_recent_window_only() -> None:
    # 100/s for the first 60 s, then 10/s for 60 s: the window (30 s) sees only the 10/s.
    buckets = steady(100, seconds=60) + steady(10, seconds=60, start=T0 + 60)
    objects, size, span = progress.recent_rate(buckets, now=T0 + 120, since=T0, width=1)
    assert (objects, size, span) == (pytest.approx(10.0), pytest.approx(10_000.0), 30.0)
    # Wide buckets widen the window to three of them.
    wide = [Bucket(start=T0 + 60 * i, objects=600, bytes=0) for i in range(10)]
    objects, _, span = progress.recent_rate(wide, now=T0 + 600, since=T0, width=60)
    assert span == 180.0 and objects == pytest.approx(3 * 600 / 180)


def test_rate_never_reaches_back_before_the_run_and_a_young_job_is_not_divided_by_zero() -> None:
    objects, _, span = progress.recent_rate(
        steady(50, seconds=5), now=T0 + 5, since=T0, width=1, window=30
    )
    assert span == 5.0 and objects == pytest.approx(50.0)
    objects, _, span = progress.recent_rate(
        [Bucket(start=T0, objects=3, bytes=0)], now=T0 + 0.1, since=T0, width=1
    )
    assert span == 1.0 and objects == 3.0


def test_eta_is_remaining_over_rate_and_unknown_without_either() -> None:
    assert progress.eta_seconds(500, 10.0) == 50.0
    assert progress.eta_seconds(0, 0.0) == 0.0
    assert progress.eta_seconds(500, 0.0) is None
    assert progress.eta_seconds(None, 10.0) is None


def test_progress_of_a_running_job() -> None:
    buckets = steady(10, seconds=60)
    job = replace(JOB, done=600, failed=12)
    p = progress.compute(
        job,
        work=RunWork(objects=950, bytes=950_000),
        buckets=buckets,
        since=T0,
        now=T0 + 60,
        width=1,
    )
    assert (p.objects_total, p.objects_done, p.failed) == (1000, 600, 12)
    assert p.percent == 60.0
    assert p.objects_per_second == pytest.approx(10.0)
    assert p.bytes_per_second == pytest.approx(10_000.0)
    assert p.eta_seconds == pytest.approx(40.0)  # 400 left at 10/s
    assert (p.bytes_done, p.bytes_total) == (600_000, 950_000)
    assert len(p.series) == 61 and p.series[0].start == T0


def test_a_stalled_job_has_no_eta() -> None:
    p = progress.compute(
        replace(JOB, done=100),
        work=RunWork(objects=950, bytes=1),
        buckets=steady(10, seconds=10),
        since=T0,
        now=T0 + 300,
        width=5,
    )
    assert (p.objects_per_second, p.eta_seconds) == (0.0, None)


def test_series_is_dense_from_the_run_start_to_now() -> None:
    series = progress.dense_series(
        [Bucket(start=T0 + 10, objects=5, bytes=50)], since=T0 + 3, until=T0 + 17, width=5
    )
    assert [(b.start - T0, b.objects) for b in series] == [(0, 0), (5, 0), (10, 5), (15, 0)]


def test_an_ended_job_reports_its_average_rate_and_no_time_left() -> None:
    job = replace(JOB, state="partially_failed", done=975, failed=5, deletions_held=True)
    buckets = steady(10, seconds=50) + steady(0, seconds=50, start=T0 + 50)
    p = progress.compute(
        job, work=RunWork(objects=930, bytes=1), buckets=buckets, since=T0, now=T0 + 100, width=1
    )
    assert p.objects_total == 980  # the held deletions are not part of it
    assert (p.percent, p.eta_seconds) == (pytest.approx(100 * 975 / 980, abs=0.01), 0.0)
    assert p.objects_per_second == pytest.approx(5.0)  # 500 over the run's 100 s


def test_a_retry_counts_only_its_own_objects() -> None:
    job = replace(JOB, run=2, done=1000, failed=3)
    p = progress.compute(
        job,
        work=RunWork(objects=8, bytes=0),
        buckets=[Bucket(start=T0, objects=5, bytes=0, failed=3)],
        since=T0,
        now=T0 + 1,
        width=1,
    )
    assert (p.objects_done, p.objects_total, p.failed) == (5, 8, 3)
    assert p.bytes_total is None  # a retry's shards do not know the sizes ahead


def test_an_ended_dry_run_is_complete() -> None:
    job = replace(JOB, state="succeeded", dry_run=True, done=50)
    p = progress.compute(job, work=RunWork(), buckets=[], since=T0, now=T0 + 2, width=1)
    assert (p.objects_total, p.percent, p.objects_per_second) == (50, 100.0, 0.0)


# --- the ledger query and measure(), on the suite's SQLite DB ---------------------------


def _job(container: Container, workspace_id: str, *, started: datetime) -> ImportJob:
    with container.db.uow() as uow:
        s = uow.session
        config = StorageConfig(
            workspace_id=workspace_id,
            name="src",
            provider="memory",
            bucket_name="b",
            credentials_encrypted=b"",
        )
        dataset = Dataset(workspace_id=workspace_id, name="d")
        s.add_all([config, dataset])
        s.flush()
        segment = Segment(dataset_id=dataset.id, name="default")
        s.add(segment)
        s.flush()
        job = ImportJob(
            workspace_id=workspace_id,
            dataset_id=dataset.id,
            segment_id=segment.id,
            source_config_id=config.id,
            manifest={},
            state="copying",
            listing_done=True,
            listed=10,
            planned=10,
            started_at=started,
        )
        s.add(job)
        s.flush()
        s.add(Shard(job_id=job.id, seq=0, items=[], object_count=10, byte_count=10_000))
        for i in range(6):
            s.add(
                LedgerEntry(
                    dataset_id=dataset.id,
                    segment_id=segment.id,
                    remote_path=f"{i}.png",
                    job_id=job.id,
                    outcome="failed" if i == 5 else "copied",
                    source_config_id=config.id,
                    source_key=f"{i}.png",
                    dest_key=f"default/{i}.png",
                    size=1000,
                    # Two in the run's second second, four in its fourth.
                    updated_at=started + timedelta(seconds=1.5 if i < 2 else 3.2),
                )
            )
        uow.commit()
        s.refresh(job)
        return job


def test_measure_buckets_the_ledger_by_update_time(container: Container, workspace_id: str) -> None:
    started = datetime.fromtimestamp(T0, UTC)
    job = _job(container, workspace_id, started=started)
    with container.db.uow() as uow:
        rows = jobs_q.ledger_throughput(uow.session, job_id=job.id, since=started, bucket_seconds=1)
        assert rows == [(int(T0) + 1, 2, 2000, 0), (int(T0) + 3, 4, 4000, 1)]
        assert jobs_q.run_work(uow.session, job_id=job.id, run=1) == (10, 10_000)
        assert jobs_q.run_started_at(uow.session, job_id=job.id, run=1) is not None
    counts = ledger_q.JobCounts(copied=5, failed=1, bytes_copied=5000)
    p = progress.measure(container.ctx, job, counts, now=started + timedelta(seconds=4))
    assert (p.objects_total, p.objects_done, p.failed, p.bytes_done) == (10, 6, 1, 6000)
    assert [b.objects for b in p.series] == [0, 2, 0, 4, 0]
    assert p.objects_per_second == pytest.approx(6 / 4)
    assert p.eta_seconds == pytest.approx(4 / 1.5, abs=0.1)


# --- `bayport status --watch` draws it --------------------------------------------------


class _Jobs:
    """A BayportClient stand-in that answers job() with the given answers in turn."""

    def __init__(self, answers: list[dict[str, object]]) -> None:
        self.answers = answers

    def job(self, job_id: str) -> dict[str, object]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _answer(state: str, **progress_fields: object) -> dict[str, object]:
    p: dict[str, object] = {
        "state": state,
        "listing_done": True,
        "objects_listed": 100,
        "objects_total": 100,
        "objects_done": 0,
        "failed": 0,
        "percent": 0.0,
        "objects_per_second": 0.0,
        "mb_per_second": 0.0,
        "eta_seconds": None,
    }
    p.update(progress_fields)
    counts = dict.fromkeys(("listed", "copied", "registered", "skipped", "failed"), 0)
    counts["bytes_copied"] = 0
    return {
        "id": "j1",
        "state": state,
        "listing_done": p["listing_done"],
        "counts": counts,
        "error": None,
        "progress": p,
    }


def test_status_texts_say_listing_then_done_of_total_rate_and_eta() -> None:
    from cli.jobs import _progress_text

    listing = _answer("listing", listing_done=False, objects_total=None, objects_listed=420)
    assert _progress_text(listing) == ("listing… 420 so far", "0.0 obj/s · 0.00 MB/s", "eta ?")
    running = _answer(
        "copying", objects_done=40, objects_per_second=12.5, mb_per_second=1.25, eta_seconds=125.0
    )
    assert _progress_text(running) == ("40/100 objects", "12.5 obj/s · 1.25 MB/s", "eta 2:05")
    assert _progress_text(_answer("copying", eta_seconds=3725.0))[2] == "eta 1:02:05"
    ended = _answer("succeeded", objects_done=100, objects_per_second=8.0, eta_seconds=0.0)
    assert _progress_text(ended) == ("100/100 objects", "average 8.0 obj/s · 0.00 MB/s", "")


def test_status_watch_follows_the_job_to_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from cli import jobs

    out = io.StringIO()
    monkeypatch.setattr(jobs, "console", Console(file=out, width=200))
    client = _Jobs(
        [
            _answer("listing", listing_done=False, objects_total=None, objects_listed=420),
            _answer("copying", objects_done=40, failed=3, percent=40.0, eta_seconds=125.0),
            _answer("partially_failed", objects_done=100, failed=3, percent=100.0),
        ]
    )
    assert jobs.watch_job(client, "j1", interval=0) == 1  # not succeeded
    text = out.getvalue()
    assert "partially_failed" in text and "100%" in text and "100/100 objects" in text
    assert "3 failed" in text and "average 0.0 obj/s" in text
