"""Scheduled syncs as they run in production: two real `bayport beat` processes and a real
Celery worker on Redis, one PostgreSQL metadata DB, a `local` source folder. Every occurrence
of a three-second schedule becomes exactly one run, started by one beat, with at most one
job; a schedule created while the beats run is picked up without a restart."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import create_engine, text

from cli.client import BayportClient
from cli.stack import LocalStack, local_stack
from devstack.sample import populate
from storage_adapters.local import LocalStore
from tests.support import seed_manifest

N = 4
RUN_SECONDS = 15
MANIFEST: dict[str, Any] = seed_manifest(config_name="user-folder")
SENT = re.compile(r"beat: schedule (\w+) occurrence (\S+): sent run (\w+)")
RECEIVED = re.compile(r"Task bayport\.run_schedule\[[\w-]+\] received")
NOT_HERE = re.compile(r"beat: schedule (\w+) occurrence (\S+): not claimed here")


@pytest.fixture
def stack(tmp_path: Path, redis_url: str, postgres_database: str) -> Iterator[LocalStack]:
    overrides = {
        "BAYPORT_BROKER_URL": redis_url,
        "BAYPORT_DATABASE_URL": postgres_database,
        "BAYPORT_LOCAL_ROOTS": json.dumps([str(tmp_path / "allowed")]),
        "BAYPORT_BEAT_REFRESH_SECONDS": "1",
        "BAYPORT_SCHEDULE_MIN_INTERVAL_SECONDS": "1",  # crons every 2-3 s
        "BAYPORT_RETRY_INITIAL_WAIT": "0.05",
    }
    with local_stack(
        data_dir=tmp_path / "bayport",
        overrides=overrides,
        worker_processes=2,
        worker_log=tmp_path / "worker.log",
    ) as running:
        client = BayportClient(running.url, running.access_key)
        # A workspace's local configs lie in its own folder of the roots: <root>/<its id>.
        engine = create_engine(postgres_database)
        with engine.connect() as conn:
            (workspace_id,) = conn.execute(text("SELECT id FROM workspace")).one()
        engine.dispose()
        source = tmp_path / "allowed" / workspace_id / "user"
        populate(LocalStore(source, create=True), N)
        client.create_storage_config(name="user-folder", provider="local", bucket_name=str(source))
        client.create_dataset("Cats")  # on Bayport's own storage (a folder)
        yield running


def _start_beat(stack: LocalStack, log: Path) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    out = open(log, "wb")  # noqa: SIM115 - closed by the test
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "beat"],
        env=stack.env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    return proc, out


def _wait_for(predicate: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _rows(database_url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())
    finally:
        engine.dispose()


def test_two_beats_start_each_occurrence_once(
    stack: LocalStack, postgres_database: str, tmp_path: Path
) -> None:
    client = BayportClient(stack.url, stack.access_key)
    logs = [tmp_path / "beat-1.log", tmp_path / "beat-2.log"]
    beats = [_start_beat(stack, log) for log in logs]
    try:
        _wait_for(
            lambda: all(b"beat: Starting" in log.read_bytes() for log in logs),
            timeout=30,
            what="both beats to start",
        )
        fast = client.create_schedule("every-3s", MANIFEST, "*/3 * * * * *")
        fast_created = datetime.fromisoformat(fast["created_at"])
        time.sleep(RUN_SECONDS / 2)
        # Created while the beats run: they find it on their next read of the DB.
        late_manifest = {**MANIFEST, "segment": "late"}
        late = client.create_schedule("late", late_manifest, "*/2 * * * * *")
        late_created = datetime.fromisoformat(late["created_at"])
        time.sleep(RUN_SECONDS / 2)
        for name in ("every-3s", "late"):
            client.update_schedule(name, enabled=False)

        def settled() -> bool:
            unsettled = _rows(
                postgres_database,
                "SELECT count(*) FROM schedule_run WHERE status IN ('claimed', 'starting')",
            )[0][0]
            running = _rows(
                postgres_database,
                "SELECT count(*) FROM import_job WHERE state NOT IN "
                "('succeeded', 'partially_failed', 'failed', 'cancelled', 'needs_review')",
            )[0][0]
            return unsettled == 0 and running == 0

        _wait_for(settled, timeout=30, what="the runs and their jobs to end")
    finally:
        for proc, out in beats:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            out.close()

    beat_logs = [log.read_text() for log in logs]
    try:
        _check(postgres_database, beat_logs, tmp_path / "worker.log", fast_created, late_created)
    except AssertionError:
        for i, text_ in enumerate(beat_logs, start=1):
            print(f"---- beat {i} ----\n{text_[-4000:]}")
        print("---- worker ----\n" + (tmp_path / "worker.log").read_text()[-4000:])
        raise


def _check(
    database_url: str,
    beat_logs: list[str],
    worker_log: Path,
    fast_created: datetime,
    late_created: datetime,
) -> None:
    schedules = dict(_rows(database_url, "SELECT name, id FROM schedule"))
    runs = _rows(
        database_url,
        "SELECT s.name, r.id, r.occurrence, r.trigger, r.status, r.job_id, r.reason, "
        "r.created_at "
        "FROM schedule_run r JOIN schedule s ON s.id = r.schedule_id ORDER BY r.occurrence",
    )
    jobs = _rows(database_url, "SELECT id, schedule_id, state FROM import_job")

    # Every occurrence is one run row, started by exactly one of the two beats.
    fast_runs = [r for r in runs if r.name == "every-3s"]
    occurrences = [r.occurrence for r in fast_runs]
    assert len(occurrences) == len(set(occurrences))
    assert len(fast_runs) >= 3, fast_runs
    for run in fast_runs:
        assert run.trigger == "cron" and run.status in ("submitted", "skipped"), run
        assert run.occurrence.second % 3 == 0 and run.occurrence.microsecond == 0
        assert run.occurrence > fast_created
        # Claimed on time: beat sleeps until the occurrence, not a polling interval.
        assert run.created_at - run.occurrence < timedelta(seconds=1.5), run
    # On the 3 s grid with none missing (the first after creation through the last).
    steps = {(b - a).total_seconds() for a, b in itertools.pairwise(occurrences)}
    assert steps == {3.0}, occurrences

    sent = [m.groups() for log in beat_logs for m in SENT.finditer(log)]
    not_here = [m.groups() for log in beat_logs for m in NOT_HERE.finditer(log)]
    by_occurrence = Counter((schedule_id, occ) for schedule_id, occ, _ in sent)
    assert all(n == 1 for n in by_occurrence.values()), by_occurrence
    assert sorted(run_id for *_, run_id in sent) == sorted(r.id for r in runs)
    # Both beats were after the same occurrences: the DB, not luck, kept them to one each.
    assert not_here, "no occurrence was contested by the second beat"
    assert all(SENT.search(log) or NOT_HERE.search(log) for log in beat_logs)
    # ... and the worker received one run_schedule task per run, no more.
    received = len(RECEIVED.findall(worker_log.read_text()))
    assert received == len(runs), (received, len(runs))

    # At most one job per run (so per occurrence), each run its own job.
    job_ids = [r.job_id for r in runs if r.job_id is not None]
    assert len(job_ids) == len(set(job_ids))
    assert [r.status == "submitted" for r in runs] == [r.job_id is not None for r in runs]
    scheduled_jobs = {j.id: j for j in jobs if j.schedule_id is not None}
    assert set(scheduled_jobs) == set(job_ids)
    fast_jobs = [scheduled_jobs[r.job_id] for r in fast_runs if r.job_id]
    assert len(fast_jobs) >= 2 and all(j.state == "succeeded" for j in fast_jobs)
    for run in fast_runs:
        if run.status == "skipped":
            assert run.reason.startswith("previous run "), run

    # The schedule made while the beats ran fired, promptly, without a restart.
    late_runs = [r for r in runs if r.name == "late"]
    assert late_runs and {r.occurrence.second % 2 for r in late_runs} == {0}
    assert late_runs[0].occurrence - late_created < timedelta(seconds=1 + 2 + 1)
    assert schedules.keys() == {"every-3s", "late"}


def test_cli_schedule_commands(stack: LocalStack, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    manifest = tmp_path / "cats.yaml"
    manifest.write_text(
        "dataset: Cats\nsource:\n  config_name: user-folder\n  data_prefix: data/images\n"
        "  label_prefix: data/labels\n  label_type: classification\n"
    )
    runner = CliRunner()
    auth = ["--api", stack.url, "--key", stack.access_key]

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["schedule", *args, *auth], env={"COLUMNS": "200"})
        assert result.exit_code == code, result.output
        return result.output

    add = ["add", "nightly", "--manifest", str(manifest), "--cron", "0 2 * * *"]
    out = cli(*add, "--timezone", "Europe/Paris", "--disabled")
    assert "nightly: 0 2 * * * (Europe/Paris), disabled" in out
    bad = cli("add", "hourly", "--manifest", str(manifest), "--cron", "0 25 * * *", code=2)
    assert '"field": "cron"' in bad and "the hour field '25'" in bad
    assert "nightly: 0 2 * * * (Europe/Paris), disabled" in cli("list")
    assert "enabled, next 20" in cli("enable", "nightly")
    assert "disabled, next -" in cli("disable", "nightly")

    run_id = cli("run", "nightly").strip()
    client = BayportClient(stack.url, stack.access_key)
    _wait_for(
        lambda: client.schedule_runs("nightly")[0]["job_state"] == "succeeded",
        timeout=30,
        what="the manual run's job",
    )
    (run,) = client.schedule_runs("nightly")
    assert run["id"] == run_id
    out = cli("runs", "nightly")
    assert "manual" in out and "submitted" in out and "succeeded" in out and run["job_id"] in out
    assert "deleted nightly" in cli("delete", "nightly")
    assert "not exist" in cli("runs", "nightly", code=2)
