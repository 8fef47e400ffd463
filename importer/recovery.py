"""Recovery from lost work: the leases tasks hold on shards and on a job's planning, and the
sweep that sends again what a killed worker or a restarted broker lost.

The metadata DB is the source of truth. A task copying a shard (or planning a job) holds a
lease on it: a heartbeat it refreshes every third of `lease_seconds`. A second delivery of
the same work finds the lease live and leaves at once, so the work never runs twice at the
same time. A lease that went stale means its holder is gone (a worker killed, a connection
lost for good): the sweep, run by every worker every `recovery_interval_seconds`, sends
the work again, and the next task takes the lease over. Work sent but never started (its
message lost with the broker) is sent again once the broker's queue is empty, that is once
the message cannot still be waiting there. Every resend is a conditional update of what
the sweep read, so two workers sweeping at once send each thing once.
"""

from __future__ import annotations

import contextvars
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from sqlmodel import Session

from importer.context import ImportContext, log
from importer.finish import finishing_stale_after
from metadata.models import ImportJob, utcnow
from metadata.queries import drafts
from metadata.queries import leases as leases_q

# --- leases ---------------------------------------------------------------------------

_current: contextvars.ContextVar[Heartbeat | None] = contextvars.ContextVar(
    "bayport_lease", default=None
)


def lease_lost() -> bool:
    """Whether the lease of the work this task runs was taken over (the task should stop
    starting new work: the new holder does it)."""
    beat = _current.get()
    return beat is not None and beat.lost.is_set()


class Heartbeat:
    """Calls `beat` every `interval` seconds on a daemon thread while the `with` block
    runs. `beat` returns False once the lease is someone else's: `lost` is then set and
    the thread ends. A failing `beat` (the DB restarting) is logged and tried again next
    time: the lease only goes stale if it keeps failing for `lease_seconds`."""

    def __init__(self, beat: Callable[[], bool], *, interval: float, what: str) -> None:
        self._beat = beat
        self._interval = interval
        self._what = what
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread: threading.Thread | None = None
        self._token: contextvars.Token[Heartbeat | None] | None = None

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat {self._what}", daemon=True
        )
        self._thread.start()
        self._token = _current.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._token is not None:
            _current.reset(self._token)
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._beat():
                    log.warning("%s: lease taken over by another task; this one stops", self._what)
                    self.lost.set()
                    return
            except Exception as exc:  # the DB restarting: beat again next time
                log.warning("%s: heartbeat failed (%s); trying again", self._what, _short(exc))


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"


def _lease(ctx: ImportContext) -> timedelta:
    return timedelta(seconds=ctx.settings.lease_seconds)


def _interval(ctx: ImportContext) -> float:
    return ctx.settings.lease_seconds / 3


_HOST = socket.gethostname()[:16]


def holder(owner: str) -> str:
    """Who holds a lease: the task (its id: a redelivered message keeps it) and the process
    running it (host and pid), so that a redelivery can tell its own earlier run, still
    alive, from one that died."""
    return f"{owner}@{_HOST}:{os.getpid()}"


def _process_gone(lease_owner: str) -> bool:
    """Has the process that holds this lease ended? Known only for this host's processes:
    another host's holder is taken to be alive until its heartbeat goes stale."""
    _, _, where = lease_owner.rpartition("@")
    host, _, pid = where.rpartition(":")
    if host != _HOST or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, as another user's
        return False
    return False


def claim_shard(ctx: ImportContext, shard_id: str, owner: str) -> bool:
    """Take the shard's lease for `owner` (a task id) in a transaction of its own; False
    when another live task holds it. The same message delivered again (Redis redelivers a
    task running longer than its visibility timeout, under the same id) leaves too while
    its first run lives: it takes the lease over only once that run's process has ended
    (a worker killed) or its heartbeat has gone stale."""
    now = utcnow()
    mine, stale = holder(owner), now - _lease(ctx)
    with ctx.db.uow() as uow:
        s = uow.session
        claimed = leases_q.claim_shard(s, shard_id=shard_id, owner=mine, now=now, stale=stale)
        if not claimed:
            current = leases_q.shard_lease_owner(s, shard_id=shard_id)
            if current is not None and current.startswith(owner + "@") and _process_gone(current):
                claimed = leases_q.claim_shard(
                    s, shard_id=shard_id, owner=mine, now=now, stale=stale, take_over=current
                )
        uow.commit()
    return claimed


def release_shard(ctx: ImportContext, shard_id: str, owner: str) -> None:
    """Give the lease up (the task has ended): a retry of the same message may take it at
    once. A failure to release is logged: the lease then goes stale by itself."""
    try:
        with ctx.db.uow() as uow:
            leases_q.release_shard(uow.session, shard_id=shard_id, owner=holder(owner))
            uow.commit()
    except Exception as exc:
        log.warning("shard %s: releasing its lease failed (%s)", shard_id, _short(exc))


def shard_heartbeat(ctx: ImportContext, shard_id: str, owner: str) -> Heartbeat:
    mine = holder(owner)

    def beat() -> bool:
        with ctx.db.uow() as uow:
            held = leases_q.beat_shard(uow.session, shard_id=shard_id, owner=mine, now=utcnow())
            uow.commit()
        return held

    return Heartbeat(beat, interval=_interval(ctx), what=f"shard {shard_id}")


def claim_planning(ctx: ImportContext, s: Session, job_id: str) -> datetime | None:
    """Take the lease of the job's planning within the caller's transaction (which holds
    the job's row lock); the holder's token, or None when a live task holds it."""
    now = utcnow()
    claimed = leases_q.claim_planning(s, job_id=job_id, now=now, stale=now - _lease(ctx))
    return now if claimed else None


def planning_heartbeat(ctx: ImportContext, job_id: str, token: datetime) -> Heartbeat:
    held = [token]

    def beat() -> bool:
        now = utcnow()
        with ctx.db.uow() as uow:
            ok = leases_q.beat_planning(uow.session, job_id=job_id, token=held[0], now=now)
            uow.commit()
        if ok:
            held[0] = now
        return ok

    return Heartbeat(beat, interval=_interval(ctx), what=f"planning of job {job_id}")


# --- the sweep ------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepReport:
    """What one sweep sent again."""

    shards: int = 0  # shards whose holder died, or whose message was lost
    plans: int = 0  # plannings whose holder died, or whose message was lost
    finishes: int = 0  # jobs with every shard done that nothing was finishing
    gatherings: int = 0  # a draft segment's registered objects whose gathering was lost

    def __bool__(self) -> bool:
        return bool(self.shards or self.plans or self.finishes or self.gatherings)

    def __str__(self) -> str:
        said = f"resent {self.shards} shards, {self.plans} plannings, {self.finishes} finishes"
        return said + (f", {self.gatherings} gatherings" if self.gatherings else "")


def planning_needs_resend(job: ImportJob, *, stale: datetime, broker_idle: bool) -> bool:
    """For a job whose listing is not done and whose planning no live task holds: a
    planner that stopped beating has died (now); one never started (or released) may
    still wait in the queue, so only when the queue is empty and the job is not new."""
    if job.heartbeat_at is not None:
        return True
    return broker_idle and job.created_at < stale


def sweep(
    ctx: ImportContext, *, broker_idle: bool, now: datetime | None = None, limit: int = 1000
) -> SweepReport:
    """Send again the lost work of running jobs: shards and plannings whose lease went
    stale or whose message was lost (`broker_idle`: the task queue is empty), and the
    finishing of jobs whose every shard is done but that did not end. Each resend is marked
    in the DB (committed before anything is sent), so concurrent sweeps send it once."""
    now = now or utcnow()
    stale = now - _lease(ctx)
    shards: list[leases_q.ShardLease] = []
    with ctx.db.uow() as uow:
        # A shard a task took since it was sent, and whose lease then went stale, lost its
        # task: sent again at once. One no task took may still wait in the queue: sent again
        # only once the queue is empty.
        for lease in leases_q.unleased_shards(
            uow.session, stale=stale, queue_empty=broker_idle, limit=limit
        ):
            if leases_q.mark_shard_resent(uow.session, lease=lease, now=now):
                shards.append(lease)
        uow.commit()
    for lease in shards:
        ctx.enqueue.copy_shard(lease.id, job_id=lease.job_id, seq=lease.seq)
    plans: list[str] = []
    with ctx.db.uow() as uow:
        for job in leases_q.unplanned_jobs(uow.session, stale=stale):
            # A dead planner's lease is released here, so the resent task can take it.
            if planning_needs_resend(
                job, stale=stale, broker_idle=broker_idle
            ) and leases_q.mark_job_resent(
                uow.session, job_id=job.id, seen=job.heartbeat_at, now=None
            ):
                plans.append(job.id)
        uow.commit()
    finishes: list[str] = []
    with ctx.db.uow() as uow:
        claim_stale = now - finishing_stale_after(ctx)
        for job in leases_q.unfinished_jobs(uow.session, stale=stale, claim_stale=claim_stale):
            # The planning task finishes a job whose listing is done; the job's lease time
            # marks it sent, so it is not sent again within a lease.
            if leases_q.mark_job_resent(uow.session, job_id=job.id, seen=job.heartbeat_at, now=now):
                finishes.append(job.id)
        uow.commit()
    for job_id in plans + finishes:
        ctx.enqueue.plan_import(job_id)
    # A gathering of registered objects queued a lease ago and not heard of since (one that
    # finds its segment busy marks it queued anew when it sends itself again): its message
    # was lost.
    with ctx.db.uow() as uow:
        gatherings = drafts.claim_stale_draft_batches(uow.session, stale=stale, now=now)
        uow.commit()
    for key in gatherings:
        ctx.enqueue.gather_draft(key)
    report = SweepReport(
        shards=len(shards), plans=len(plans), finishes=len(finishes), gatherings=len(gatherings)
    )
    for what, n in (
        ("shard", report.shards),
        ("planning", report.plans),
        ("finish", report.finishes),
        ("gathering", report.gatherings),
    ):
        if n:
            ctx.metrics.resent(what, n)
    if report:
        jobs = sorted({lease.job_id for lease in shards} | set(plans) | set(finishes))
        log.warning("recovery: %s (jobs %s)", report, ", ".join(jobs))
    return report
