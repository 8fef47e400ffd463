"""/v1/schedules on a real DB: CRUD, validation naming the field, workspaces, run now, skip
while the previous job runs, run history, and one run per occurrence under racing claims
(SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from bayport.settings import Settings
from bootstrap import Container, build_container
from devstack.sample import populate
from importer import service as imports
from importer.manifest import ImportManifest
from metadata.db import migrate
from metadata.models import ImportJob, Schedule, ScheduleRun
from metadata.queries import datasets as datasets_q
from metadata.queries import storage_configs
from metadata.queries import workspaces as workspaces_q
from scheduler import service as schedules
from storage_adapters.base import StorageSpec
from storage_adapters.registry import open_store
from tests.conftest import make_settings
from tests.support import InlineQueue, add_seed_configs, api_client, seed_manifest

N = 5
MANIFEST: dict[str, Any] = seed_manifest()


class World:
    def __init__(self, container: Container, queue: InlineQueue) -> None:
        self.container, self.queue = container, queue
        self.ctx = container.ctx
        with container.db.uow() as uow:
            alice, alice_key = workspaces_q.create_workspace(uow.session, name="alice")
            _, bob_key = workspaces_q.create_workspace(uow.session, name="bob")
            uow.commit()
        self.workspace_id = alice.id
        add_seed_configs(self.ctx, container.box, workspace_id=alice.id)
        self.client = self._client(alice_key)
        self.other = self._client(bob_key)
        r = self.client.post("/v1/datasets", json={"name": "Cats", "config_name": "datasets"})
        assert r.status_code == 201, r.text
        populate(open_store(StorageSpec(provider="memory", bucket="user")), N)

    def _client(self, key: str) -> TestClient:
        client = api_client(self.container, key)
        return client

    def create(self, name: str = "nightly", **fields: Any) -> dict[str, Any]:
        body = {"name": name, "manifest": MANIFEST, "cron": "0 2 * * *", **fields}
        r = self.client.post("/v1/schedules", json=body)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    def runs(self, name: str = "nightly") -> list[dict[str, Any]]:
        r = self.client.get(f"/v1/schedules/{name}/runs")
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


def _world(settings: Settings) -> Iterator[World]:
    migrate(settings.resolved_database_url)
    queue = InlineQueue()
    container = build_container(settings, enqueuer=queue)
    yield World(container, queue)
    container.db.dispose()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    # Crons firing every few seconds keep these tests short: allowed here.
    yield from _world(make_settings(tmp_path / "bayport", schedule_min_interval_seconds=1))


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    overrides: dict[str, object] = {"schedule_min_interval_seconds": 1}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_database")
    yield from _world(make_settings(tmp_path / "bayport", **overrides))


# --- keeping schedules ----------------------------------------------------------------


def test_create_read_update_delete(world: World) -> None:
    c = world.client
    r = c.post(
        "/v1/schedules",
        json={
            "name": "nightly",
            "manifest": MANIFEST,
            "cron": "0 2 * * *",
            "timezone": "Europe/Paris",
        },
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/v1/schedules/nightly"
    created = r.json()
    assert (created["cron"], created["timezone"], created["enabled"]) == (
        "0 2 * * *",
        "Europe/Paris",
        True,
    )
    assert created["manifest"]["source"]["config_name"] == "user-bucket"
    assert created["last_occurrence"] is None
    next_at = datetime.fromisoformat(created["next_occurrence"])
    assert next_at > datetime.now(UTC) and next_at.minute == 0
    assert next_at.astimezone(ZoneInfo("Europe/Paris")).hour == 2

    assert c.get("/v1/schedules/nightly").json()["next_occurrence"] == created["next_occurrence"]
    assert [s["name"] for s in c.get("/v1/schedules").json()] == ["nightly"]
    assert c.post("/v1/schedules", json={**_body(), "name": "nightly"}).status_code == 409

    r = c.patch("/v1/schedules/nightly", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert r.json()["next_occurrence"] is None
    r = c.patch("/v1/schedules/nightly", json={"cron": "*/30 * * * * *", "timezone": "UTC"})
    assert r.status_code == 200, r.text
    assert (r.json()["cron"], r.json()["timezone"], r.json()["enabled"]) == (
        "*/30 * * * * *",
        "UTC",
        False,
    )
    manifest = {**MANIFEST, "segment": "nightly", "options": {"shard_size": 2}}
    r = c.patch("/v1/schedules/nightly", json={"manifest": manifest, "enabled": True})
    assert r.status_code == 200, r.text
    assert r.json()["manifest"]["segment"] == "nightly"
    assert r.json()["manifest"]["options"]["shard_size"] == 2
    assert datetime.fromisoformat(r.json()["next_occurrence"]).second in (0, 30)

    assert c.delete("/v1/schedules/nightly").status_code == 204
    assert c.get("/v1/schedules/nightly").status_code == 404
    assert c.get("/v1/schedules").json() == []


def _body(**fields: Any) -> dict[str, Any]:
    return {"name": "nightly", "manifest": MANIFEST, "cron": "0 2 * * *", **fields}


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cron": "61 2 * * *"}, "cron", "the minute field '61'"),
        ({"cron": "0 2 * *"}, "cron", "5 fields"),
        ({"cron": "0 0 31 2 *"}, "cron", "never occurs"),
        ({"cron": "* * * * * * *"}, "cron", "has 7"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_cron_or_time_zone_is_422_naming_the_field(
    world: World, fields: dict[str, Any], field: str, words: str
) -> None:
    r = world.client.post("/v1/schedules", json=_body(**fields))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and words in r.json()["detail"], r.json()
    world.create()
    r = world.client.patch("/v1/schedules/nightly", json=fields)
    assert (r.status_code, r.json()["field"]) == (422, field), r.text
    assert world.client.get("/v1/schedules/nightly").json()["cron"] == "0 2 * * *"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (_body(name="no/slash"), ["body", "name"]),
        (
            _body(manifest={**MANIFEST, "options": {"shard_size": 0}}),
            ["body", "manifest", "options", "shard_size"],
        ),
        (
            _body(manifest={"dataset": "Cats", "source": {}}),
            ["body", "manifest", "source", "config_name"],
        ),
        (_body(colour="red"), ["body", "colour"]),
        ({"name": "nightly", "manifest": MANIFEST}, ["body", "cron"]),
    ],
)
def test_bad_bodies_are_422_with_the_location(
    world: World, body: dict[str, Any], loc: list[str]
) -> None:
    r = world.client.post("/v1/schedules", json=body)
    assert r.status_code == 422, r.text
    assert any(err["loc"] == loc for err in r.json()["detail"]), r.json()


def test_unknown_dataset_or_config_is_404_naming_the_field(world: World) -> None:
    r = world.client.post("/v1/schedules", json=_body(manifest={**MANIFEST, "dataset": "Dogs"}))
    assert (r.status_code, r.json()["field"]) == (404, "manifest.dataset"), r.text
    source = {**MANIFEST["source"], "config_name": "nope"}
    r = world.client.post("/v1/schedules", json=_body(manifest={**MANIFEST, "source": source}))
    assert (r.status_code, r.json()["field"]) == (404, "manifest.source.config_name"), r.text
    assert world.client.patch("/v1/schedules/absent", json={"enabled": False}).status_code == 404


def test_another_workspaces_schedule_is_404(world: World) -> None:
    world.create()
    other = world.other
    assert other.get("/v1/schedules").json() == []
    assert other.get("/v1/schedules/nightly").status_code == 404
    assert other.patch("/v1/schedules/nightly", json={"enabled": False}).status_code == 404
    assert other.post("/v1/schedules/nightly/run").status_code == 404
    assert other.get("/v1/schedules/nightly/runs").status_code == 404
    assert other.delete("/v1/schedules/nightly").status_code == 404
    # bob cannot schedule imports from alice's dataset and config either
    r = other.post("/v1/schedules", json=_body())
    assert (r.status_code, r.json()["field"]) == (404, "manifest.dataset")
    assert world.client.get("/v1/schedules/nightly").json()["enabled"] is True


# --- running ---------------------------------------------------------------------------


def _jobs(world: World) -> list[ImportJob]:
    with world.container.db.uow() as uow:
        return list(uow.session.exec(select(ImportJob).order_by(col(ImportJob.created_at))).all())


def test_run_now_starts_a_job_linked_to_the_schedule(world: World) -> None:
    world.create(enabled=False)  # a manual run does not need the schedule enabled
    r = world.client.post("/v1/schedules/nightly/run")
    assert r.status_code == 202, r.text
    run = r.json()
    assert (run["trigger"], run["status"], run["job_id"]) == ("manual", "claimed", None)
    assert list(world.queue.tasks) == [("schedule", run["id"])]
    world.queue.drain(world.ctx)

    (job,) = _jobs(world)
    with world.container.db.uow() as uow:
        schedule_id = uow.session.exec(select(Schedule.id)).one()
    assert (job.schedule_id, job.state, job.copied) == (schedule_id, "succeeded", N)
    (listed,) = world.runs()
    assert (listed["id"], listed["status"], listed["job_id"]) == (run["id"], "submitted", job.id)
    assert (listed["job_state"], listed["copied"], listed["skipped"], listed["failed"]) == (
        "succeeded",
        N,
        0,
        0,
    )
    assert (listed["relabelled"], listed["deleted"], listed["review_reason"]) == (0, 0, None)
    assert world.client.get(f"/v1/imports/{job.id}").json()["counts"]["copied"] == N
    # A manual run leaves the cron's clock alone.
    assert world.client.get("/v1/schedules/nightly").json()["last_occurrence"] is None


def test_a_run_while_the_previous_job_runs_is_skipped_with_the_reason(world: World) -> None:
    world.create()
    first = world.client.post("/v1/schedules/nightly/run").json()
    world.queue.drain(world.ctx, only={"schedule"})  # the job is submitted, not yet planned
    (job,) = _jobs(world)
    assert job.state == "queued"

    second = world.client.post("/v1/schedules/nightly/run").json()
    world.queue.drain(world.ctx, only={"schedule"})
    assert len(_jobs(world)) == 1
    runs = world.runs()
    assert [r["id"] for r in runs] == [second["id"], first["id"]]  # newest first
    assert (runs[0]["status"], runs[0]["job_id"]) == ("skipped", None)
    assert runs[0]["reason"] == f"previous run {job.id} is still queued"
    assert (runs[1]["status"], runs[1]["job_id"], runs[1]["job_state"]) == (
        "submitted",
        job.id,
        "queued",
    )

    world.queue.drain(world.ctx)  # the first job runs to its end
    third = world.client.post("/v1/schedules/nightly/run").json()
    world.queue.drain(world.ctx)
    runs = world.runs()
    assert [r["id"] for r in runs] == [third["id"], second["id"], first["id"]]
    assert runs[0]["status"] == "submitted" and runs[0]["job_id"] != job.id
    assert (runs[0]["job_state"], runs[0]["copied"], runs[0]["skipped"]) == ("succeeded", 0, N)


def test_a_run_finding_another_job_on_the_segment_is_skipped(world: World) -> None:
    world.create()
    direct = world.client.post("/v1/imports", json=MANIFEST).json()
    world.client.post("/v1/schedules/nightly/run")
    world.queue.drain(world.ctx, only={"schedule"})
    (run,) = world.runs()
    assert run["status"] == "skipped" and run["job_id"] is None
    assert f"import job {direct['id']} is still queued" in run["reason"]


def test_a_run_whose_manifest_no_longer_fits_fails_with_the_reason(world: World) -> None:
    world.create(manifest={**MANIFEST, "options": {"move": True}})
    with world.container.db.uow() as uow:  # make the import in place: move is refused then
        dataset = datasets_q.get_dataset(uow.session, workspace_id=world.workspace_id, name="Cats")
        source = storage_configs.get_config(
            uow.session, workspace_id=world.workspace_id, name="user-bucket"
        )
        assert dataset is not None and source is not None
        dataset.config_id, dataset.path = source.id, "data/images/"
        uow.commit()
    world.client.post("/v1/schedules/nightly/run")
    world.queue.drain(world.ctx)
    (run,) = world.runs()
    assert run["status"] == "failed" and "options.move" in run["reason"]
    assert _jobs(world) == []


def test_running_a_run_twice_starts_one_job(world: World) -> None:
    world.create()
    run = world.client.post("/v1/schedules/nightly/run").json()
    world.queue.drain(world.ctx, only={"schedule"})
    assert schedules.run_schedule(world.ctx, run["id"]) is not None  # a redelivery
    assert len(_jobs(world)) == 1 and world.runs()[0]["status"] == "submitted"


def test_a_run_interrupted_after_submitting_takes_its_job_on_redelivery(world: World) -> None:
    world.create()
    run = world.client.post("/v1/schedules/nightly/run").json()
    world.queue.tasks.clear()
    with world.container.db.uow() as uow:
        row = uow.session.get(ScheduleRun, run["id"])
        assert row is not None
        row.status = "starting"  # the task got this far ...
        schedule_id = row.schedule_id
        uow.commit()
    job = imports.submit_import(  # ... and submitted its job, then its worker died
        world.ctx,
        workspace_id=world.workspace_id,
        manifest=ImportManifest.model_validate(MANIFEST),
        schedule_id=schedule_id,
    )
    schedules.run_schedule(world.ctx, run["id"])
    (listed,) = world.runs()
    assert (listed["status"], listed["job_id"]) == ("submitted", job.id)
    assert len(_jobs(world)) == 1


# --- claiming occurrences (SQLite and PostgreSQL) -------------------------------------


def _backdate(world: World, name: str, *, to: datetime) -> str:
    """Pretend the schedule was made at `to` (so its past occurrences may be due)."""
    with world.container.db.uow() as uow:
        schedule = uow.session.exec(select(Schedule).where(Schedule.name == name)).one()
        schedule.created_at = schedule.updated_at = to
        uow.commit()
        return schedule.id


def _run_rows(world: World, schedule_id: str) -> list[ScheduleRun]:
    with world.container.db.uow() as uow:
        return list(
            uow.session.exec(
                select(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id)
            ).all()
        )


def test_two_claims_of_one_occurrence_make_one_run(any_db_world: World) -> None:
    world = any_db_world
    world.create()
    now = datetime.now(UTC)
    schedule_id = _backdate(world, "nightly", to=now - timedelta(days=3))
    with world.container.db.uow() as uow:
        schedule = uow.session.get(Schedule, schedule_id)
        assert schedule is not None
        occurrence = schedules.due_occurrence(schedule, now)
    assert occurrence is not None and occurrence.hour == 2

    db = world.container.db
    first = schedules.claim_occurrence(db, schedule_id, occurrence, "cron")
    second = schedules.claim_occurrence(db, schedule_id, occurrence, "cron")
    assert first is not None and second is None
    (row,) = _run_rows(world, schedule_id)
    assert (row.id, row.occurrence, row.trigger, row.status) == (
        first.id,
        occurrence,
        "cron",
        "claimed",
    )
    assert world.client.get("/v1/schedules/nightly").json()["last_occurrence"] is not None
    # Not an occurrence of the cron (a beat with a stale copy), or an older one: refused.
    assert schedules.claim_occurrence(db, schedule_id, occurrence + timedelta(hours=1)) is None
    assert schedules.claim_occurrence(db, schedule_id, occurrence - timedelta(days=1)) is None
    assert len(_run_rows(world, schedule_id)) == 1
    # Two manual runs for one instant: the unique (schedule, occurrence) key alone decides.
    instant = datetime.now(UTC)
    assert schedules.claim_occurrence(db, schedule_id, instant, "manual") is not None
    assert schedules.claim_occurrence(db, schedule_id, instant, "manual") is None
    assert len(_run_rows(world, schedule_id)) == 2


def test_racing_beats_claim_each_occurrence_once(any_db_world: World) -> None:
    world = any_db_world
    world.create(cron="*/3 * * * * *")
    now = datetime.now(UTC)
    schedule_id = _backdate(world, "nightly", to=now - timedelta(days=3))
    start = threading.Barrier(8)
    won: list[ScheduleRun | None] = []

    def beat() -> None:
        start.wait()
        won.append(schedules.fire_due(world.ctx, schedule_id, now))

    threads = [threading.Thread(target=beat) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [run for run in won if run is not None]
    assert len(won) == 8 and len(winners) == 1
    (row,) = _run_rows(world, schedule_id)
    assert row.id == winners[0].id and row.occurrence <= now
    # Only the winner enqueued; three missed days became one run.
    assert list(world.queue.tasks) == [("schedule", row.id)]


def test_disabled_or_deleted_schedules_are_not_claimed(any_db_world: World) -> None:
    world = any_db_world
    world.create(cron="*/3 * * * * *")
    now = datetime.now(UTC)
    schedule_id = _backdate(world, "nightly", to=now - timedelta(hours=1))
    with world.container.db.uow() as uow:
        schedule = uow.session.get(Schedule, schedule_id)
        assert schedule is not None
        schedule.enabled = False
        uow.commit()
    occurrence = now.replace(second=now.second - now.second % 3, microsecond=0)
    assert schedules.claim_occurrence(world.container.db, schedule_id, occurrence) is None
    assert schedules.fire_due(world.ctx, schedule_id, now) is None
    world.client.delete("/v1/schedules/nightly")
    assert schedules.claim_occurrence(world.container.db, schedule_id, occurrence) is None
    assert list(world.queue.tasks) == []


# --- the beat scheduler, in this process ----------------------------------------------


def test_the_beat_scheduler_claims_due_occurrences_once_and_sleeps_until_the_next(
    world: World,
) -> None:
    from bootstrap import set_container
    from scheduler.beat import DatabaseScheduler
    from taskqueue.app import make_celery

    set_container(world.container)  # the beat's composition root: this DB, this queue
    try:
        world.create(cron="*/2 * * * * *")
        schedule_id = _backdate(world, "nightly", to=datetime.now(UTC) - timedelta(days=1))
        app = make_celery(world.container.settings)
        beat, other = DatabaseScheduler(app=app), DatabaseScheduler(app=app)
        time.sleep(2.05 - time.time() % 2)  # just after an occurrence: 2 s before the next

        wait = beat.tick()  # a day of missed occurrences: one run, for the latest
        (run,) = _run_rows(world, schedule_id)
        assert list(world.queue.tasks) == [("schedule", run.id)]
        assert 0 < wait <= 2.0
        assert other.tick() <= 2.0 and beat.tick() <= 2.0  # nothing new in the same 2 s
        assert len(_run_rows(world, schedule_id)) == 1

        time.sleep(wait)
        beat.tick()
        other.tick()
        rows = _run_rows(world, schedule_id)
        assert len(rows) == 2 and len(world.queue.tasks) == 2

        # Disabled through the API: a beat still holding the old copy claims nothing.
        world.client.patch("/v1/schedules/nightly", json={"enabled": False})
        time.sleep(2.0)
        beat.tick()
        assert len(_run_rows(world, schedule_id)) == 2
    finally:
        set_container(None)
