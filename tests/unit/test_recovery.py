"""Leases and the recovery sweep (importer/recovery.py) on a real SQLite DB, tasks run inline:
who may take a shard or a planning, and what a sweep sends again after a worker died or the
broker lost its messages."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bootstrap import Container
from devstack.sample import populate
from devstack.services import free_port
from importer import recovery, service
from importer.context import ImportContext
from importer.manifest import ImportManifest
from importer.ports import NullMetrics
from metadata.models import ImportJob, LedgerEntry, Shard, utcnow
from metadata.queries import leases as leases_q
from storage_adapters.base import StorageSpec
from storage_adapters.registry import open_store
from taskqueue.app import make_celery
from taskqueue.enqueue import CeleryEnqueuer
from tests.conftest import make_settings
from tests.support import InlineQueue, add_dataset, add_seed_configs, seed_manifest

N = 20
SHARDS = 4  # of 5 objects


@pytest.fixture
def ctx(container: Container, workspace_id: str) -> ImportContext:
    populate(open_store(StorageSpec(provider="memory", bucket="user")), N)
    c = container.ctx
    dest = add_seed_configs(c, container.box, workspace_id=workspace_id, datasets_bucket="ds")
    add_dataset(c, workspace_id=workspace_id, name="Cats", config=dest)
    return c


def submit(ctx: ImportContext, workspace_id: str) -> str:
    manifest = ImportManifest.model_validate(seed_manifest(labels=False, shard_size=N // SHARDS))
    return service.submit_import(ctx, workspace_id=workspace_id, manifest=manifest).id


def planned(ctx: ImportContext, queue: InlineQueue, workspace_id: str) -> tuple[str, list[str]]:
    """A job planned, its shards' messages in `queue`: (job id, shard ids)."""
    job_id = submit(ctx, workspace_id)
    queue.drain(ctx, only={"plan"})
    shard_ids = [ident for kind, ident in queue.tasks if kind == "copy"]
    assert len(shard_ids) == SHARDS
    return job_id, shard_ids


def shard(ctx: ImportContext, shard_id: str) -> Shard:
    with ctx.db.uow() as uow:
        found = uow.session.get(Shard, shard_id)
    assert found is not None
    return found


def job(ctx: ImportContext, job_id: str) -> ImportJob:
    with ctx.db.uow() as uow:
        found = uow.session.get(ImportJob, job_id)
    assert found is not None
    return found


def backdate(ctx: ImportContext, shard_id: str, seconds: float) -> None:
    """Move the shard's creation, sending and heartbeat `seconds` into the past."""
    with ctx.db.uow() as uow:
        found = uow.session.get(Shard, shard_id)
        assert found is not None
        ago = timedelta(seconds=seconds)
        found.created_at -= ago
        found.dispatched_at = found.dispatched_at - ago if found.dispatched_at else None
        found.heartbeat_at = found.heartbeat_at - ago if found.heartbeat_at else None
        uow.commit()


def later(ctx: ImportContext, leases: float = 1.5) -> datetime:
    return utcnow() + timedelta(seconds=ctx.settings.lease_seconds * leases)


def lose_messages(queue: InlineQueue) -> None:
    queue.tasks.clear()


def ledger_count(ctx: ImportContext) -> int:
    with ctx.db.uow() as uow:
        return len(uow.session.exec(select(LedgerEntry)).all())


# --- leases -----------------------------------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def held_by_dead_process(ctx: ImportContext, shard_id: str, owner: str) -> None:
    """As if `owner`'s task had run in a worker process that was killed since."""
    with ctx.db.uow() as uow:
        found = uow.session.get(Shard, shard_id)
        assert found is not None and found.lease_owner == recovery.holder(owner)
        found.lease_owner = found.lease_owner.rsplit(":", 1)[0] + f":{dead_pid()}"
        uow.commit()


def test_a_live_shard_lease_keeps_other_tasks_out_and_its_own_live_redelivery(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str
) -> None:
    _job_id, (first, *_rest) = planned(ctx, queue, workspace_id)
    assert recovery.claim_shard(ctx, first, "task-a")
    assert not recovery.claim_shard(ctx, first, "task-b")  # a duplicate message: leaves
    # The same message again while its first run still heartbeats (Redis redelivers a task
    # running past its visibility timeout under the same id): it leaves too.
    assert not recovery.claim_shard(ctx, first, "task-a")
    held_by_dead_process(ctx, first, "task-a")  # its worker was killed: taken over
    assert recovery.claim_shard(ctx, first, "task-a")
    a, b = recovery.holder("task-a"), recovery.holder("task-b")
    now = utcnow()
    with ctx.db.uow() as uow:
        assert leases_q.beat_shard(uow.session, shard_id=first, owner=a, now=now)
        assert not leases_q.beat_shard(uow.session, shard_id=first, owner=b, now=now)
        uow.commit()
    backdate(ctx, first, ctx.settings.lease_seconds + 1)  # task-a stopped beating
    assert recovery.claim_shard(ctx, first, "task-b")
    with ctx.db.uow() as uow:
        assert not leases_q.beat_shard(uow.session, shard_id=first, owner=a, now=utcnow())
    found = shard(ctx, first)
    assert (found.lease_owner, found.deliveries) == (b, 3)


def test_item5_a_same_id_redelivery_leaves_while_the_first_run_heartbeats(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str
) -> None:
    """Issue 19 item 5: before, `claim_shard` let the same task id in again, and two runs
    held one lease. A task that ended releases its lease: a retry takes it at once."""
    _job_id, (first, *_rest) = planned(ctx, queue, workspace_id)
    assert recovery.claim_shard(ctx, first, "same-id")
    result = service.copy_shard(ctx, first, lease_owner="same-id")
    assert result.held_elsewhere and ledger_count(ctx) == 0
    recovery.release_shard(ctx, first, "same-id")  # the first run ended (say, it raised)
    result = service.copy_shard(ctx, first, lease_owner="same-id")  # Celery's retry
    assert (result.copied, shard(ctx, first).done) == (N // SHARDS, True)


def test_a_duplicate_delivery_of_a_held_shard_copies_nothing(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str
) -> None:
    _job_id, (first, *_rest) = planned(ctx, queue, workspace_id)
    assert recovery.claim_shard(ctx, first, "busy-elsewhere")
    result = service.copy_shard(ctx, first, lease_owner="duplicate")
    assert result.held_elsewhere and str(result).startswith("another task")
    assert ledger_count(ctx) == 0 and not shard(ctx, first).done
    held_by_dead_process(ctx, first, "busy-elsewhere")
    result = service.copy_shard(ctx, first, lease_owner="busy-elsewhere")  # redelivered
    assert (result.copied, shard(ctx, first).done) == (N // SHARDS, True)


def test_a_heartbeat_rides_out_errors_and_reports_a_lost_lease() -> None:
    answers: Iterator[bool | Exception] = iter([RuntimeError("the DB is restarting"), True, False])

    def beat() -> bool:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with recovery.Heartbeat(beat, interval=0.02, what="test") as heartbeat:
        assert heartbeat.lost.wait(5)
        assert recovery.lease_lost()
    assert not recovery.lease_lost()  # outside its block


def test_a_copy_stops_starting_objects_once_its_lease_is_taken_over(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str
) -> None:
    _job_id, (first, *_rest) = planned(ctx, queue, workspace_id)
    settings = ctx.settings.model_copy(update={"lease_seconds": 0.06})  # beats every 20 ms
    quick = dataclasses.replace(ctx, settings=settings)
    assert recovery.claim_shard(quick, first, "slow")
    with ctx.db.uow() as uow:  # another task took it over meanwhile
        found = uow.session.get(Shard, first)
        assert found is not None
        found.lease_owner = "other"
        uow.commit()
    with recovery.shard_heartbeat(quick, first, "slow") as heartbeat:
        assert heartbeat.lost.wait(5)
        from importer.shards import _copy_shard

        result = _copy_shard(quick, first)
    assert result.held_elsewhere  # nothing started, and the shard left to its new holder
    assert ledger_count(ctx) == 0 and not shard(ctx, first).done


def test_a_planning_lease_is_a_token_only_its_holder_can_renew(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str
) -> None:
    job_id = submit(ctx, workspace_id)
    with ctx.db.uow() as uow:
        token = recovery.claim_planning(ctx, uow.session, job_id)
        assert token is not None
        assert recovery.claim_planning(ctx, uow.session, job_id) is None  # live
        uow.commit()
    queue.drain(ctx, only={"plan"})  # the submitted message: the planning is held, it leaves
    assert job(ctx, job_id).shards_total == 0
    now = utcnow()
    with ctx.db.uow() as uow:
        assert leases_q.beat_planning(uow.session, job_id=job_id, token=token, now=now)
        assert not leases_q.beat_planning(uow.session, job_id=job_id, token=token, now=utcnow())
        uow.commit()


# --- the sweep --------------------------------------------------------------------------


def test_nothing_is_resent_while_work_is_young_or_held(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str
) -> None:
    _job_id, shard_ids = planned(ctx, queue, workspace_id)
    assert not recovery.sweep(ctx, broker_idle=True)  # sent just now
    for shard_id in shard_ids:
        assert recovery.claim_shard(ctx, shard_id, "alive")
    assert not recovery.sweep(ctx, broker_idle=True, now=utcnow() + timedelta(seconds=1))


def test_a_shard_whose_holder_died_is_resent_at_once_then_waits_for_an_empty_queue(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str
) -> None:
    job_id, (first, *_rest) = planned(ctx, queue, workspace_id)
    assert recovery.claim_shard(ctx, first, "killed")
    backdate(ctx, first, ctx.settings.lease_seconds * 2)
    queue.tasks.clear()
    report = recovery.sweep(ctx, broker_idle=False)  # a busy queue does not hold it back
    assert (report.shards, list(queue.tasks)) == (1, [("copy", first)])
    assert shard(ctx, first).dispatched_at is not None
    assert not recovery.sweep(ctx, broker_idle=True)  # just resent: its message may wait
    # A lease later, still not taken: lost too, or still waiting behind others.
    assert not recovery.sweep(ctx, broker_idle=False, now=later(ctx))
    # With the queue empty, it is sent again, and so are the others (their messages lost).
    assert recovery.sweep(ctx, broker_idle=True, now=later(ctx)).shards == SHARDS
    queue.tasks.clear()
    assert service.copy_shard(ctx, first, lease_owner="replacement").copied == N // SHARDS
    assert shard(ctx, first).done and job(ctx, job_id).state == "copying"


def test_messages_lost_with_the_broker_are_resent_once_the_queue_is_empty(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str
) -> None:
    job_id, shard_ids = planned(ctx, queue, workspace_id)
    lose_messages(queue)
    assert not recovery.sweep(ctx, broker_idle=False, now=later(ctx))  # may still be queued
    counted: list[tuple[str, int]] = []

    class Counting(NullMetrics):
        def resent(self, what: str, n: int) -> None:
            counted.append((what, n))

    report = recovery.sweep(
        dataclasses.replace(ctx, metrics=Counting()), broker_idle=True, now=later(ctx)
    )
    assert report.shards == SHARDS and sorted(i for _k, i in queue.tasks) == sorted(shard_ids)
    assert counted == [("shard", SHARDS)]  # shown at /metrics as bayport_recovery_resends
    # A second worker sweeping at the same moment finds them resent already.
    assert not recovery.sweep(ctx, broker_idle=True, now=later(ctx))
    queue.drain(ctx)
    found = job(ctx, job_id)
    assert (found.state, found.copied) == ("succeeded", N)
    assert not recovery.sweep(ctx, broker_idle=True, now=later(ctx, 10))  # ended: nothing


def test_a_lost_planning_is_resent_and_a_dead_planners_lease_released(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str
) -> None:
    job_id = submit(ctx, workspace_id)
    lose_messages(queue)  # the planning message never reached a worker
    assert not recovery.sweep(ctx, broker_idle=True)  # a new job's message may be on its way
    assert not recovery.sweep(ctx, broker_idle=False, now=later(ctx))
    assert recovery.sweep(ctx, broker_idle=True, now=later(ctx)).plans == 1
    assert list(queue.tasks) == [("plan", job_id)]
    lose_messages(queue)
    with ctx.db.uow() as uow:  # a planner takes it, then dies
        assert recovery.claim_planning(ctx, uow.session, job_id) is not None
        uow.commit()
    assert not recovery.sweep(ctx, broker_idle=True)  # alive as far as anyone knows
    assert recovery.sweep(ctx, broker_idle=False, now=later(ctx)).plans == 1
    assert job(ctx, job_id).heartbeat_at is None  # released for the resent task to take
    queue.drain(ctx)
    found = job(ctx, job_id)
    assert (found.state, found.copied, found.shards_total) == ("succeeded", N, SHARDS)


def test_a_job_whose_finishing_was_lost_is_finished(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str
) -> None:
    job_id, shard_ids = planned(ctx, queue, workspace_id)
    lose_messages(queue)
    for shard_id in shard_ids:
        service.copy_shard(ctx, shard_id)
    with ctx.db.uow() as uow:  # as if the last shard's worker died before finishing the job
        found = uow.session.get(ImportJob, job_id)
        assert found is not None
        found.state, found.finishing_at, found.heartbeat_at = "copying", None, None
        uow.commit()
    assert recovery.sweep(ctx, broker_idle=False).finishes == 1
    assert not recovery.sweep(ctx, broker_idle=True)  # sent: not again within a lease
    queue.drain(ctx)
    assert job(ctx, job_id).state == "succeeded"


def test_a_finisher_that_died_mid_report_is_replaced_after_three_quiet_leases(
    ctx: ImportContext, queue: InlineQueue, workspace_id: str
) -> None:
    job_id, shard_ids = planned(ctx, queue, workspace_id)
    lose_messages(queue)
    for shard_id in shard_ids:
        service.copy_shard(ctx, shard_id)
    lease = timedelta(seconds=ctx.settings.lease_seconds)

    def claimed(ago: timedelta) -> None:  # its finisher claimed it `ago`, then went quiet
        with ctx.db.uow() as uow:
            found = uow.session.get(ImportJob, job_id)
            assert found is not None
            found.state, found.heartbeat_at = "copying", None
            found.finishing_at = utcnow() - ago
            uow.commit()

    claimed(2 * lease)  # quiet for two leases: may still be listing a slow label page
    assert recovery.sweep(ctx, broker_idle=True).finishes == 0
    claimed(3 * lease + timedelta(seconds=1))
    assert recovery.sweep(ctx, broker_idle=True).finishes == 1
    queue.drain(ctx)
    assert job(ctx, job_id).state == "succeeded"


def test_a_sweep_reports_nothing_when_every_job_ended(ctx: ImportContext) -> None:
    assert str(recovery.sweep(ctx, broker_idle=True)) == (
        "resent 0 shards, 0 plannings, 0 finishes"
    )


# --- sending without a broker -------------------------------------------------------------


def test_a_message_the_broker_cannot_take_is_left_to_the_sweep(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    enqueuer = CeleryEnqueuer(make_celery(settings))
    done = threading.Event()

    def send() -> None:
        enqueuer.copy_shard("some-shard", job_id="some-job", seq=1)
        enqueuer.plan_import("some-job")
        done.set()

    started = time.monotonic()
    threading.Thread(target=send, daemon=True).start()
    assert done.wait(30), "sending to a broker that is down should give up, not hang"
    assert time.monotonic() - started < 30
