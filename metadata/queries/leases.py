"""Leases: which task holds a shard (or a job's planning), and since when; what recovery
sends again. Helpers take a session and keyword arguments; none commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, literal, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from metadata.models import ImportJob, Shard
from metadata.queries._common import FINAL_STATE_VALUES


def _changed(result: Any) -> bool:
    return bool(result.rowcount)


def claim_shard(
    session: Session,
    *,
    shard_id: str,
    owner: str,
    now: datetime,
    stale: datetime,
    take_over: str | None = None,
) -> bool:
    """Take the shard's lease for `owner` unless another live task holds it: free, stale
    (last heartbeat before `stale`), or held by `take_over` (a holder known to have died).
    Counts the delivery."""
    free = [col(Shard.heartbeat_at).is_(None), col(Shard.heartbeat_at) < stale]
    if take_over is not None:
        free.append(col(Shard.lease_owner) == take_over)
    result = session.execute(
        update(Shard)
        .where(col(Shard.id) == shard_id, col(Shard.done) == False, or_(*free))  # noqa: E712
        .values(lease_owner=owner, heartbeat_at=now, deliveries=col(Shard.deliveries) + 1)
    )
    return _changed(result)


def shard_lease_owner(session: Session, *, shard_id: str) -> str | None:
    return session.exec(select(Shard.lease_owner).where(Shard.id == shard_id)).first()


def release_shard(session: Session, *, shard_id: str, owner: str) -> None:
    """Give up `owner`'s lease on the shard (its task has ended)."""
    session.execute(
        update(Shard)
        .where(col(Shard.id) == shard_id, col(Shard.lease_owner) == owner)
        .values(heartbeat_at=None)
    )


def beat_shard(session: Session, *, shard_id: str, owner: str, now: datetime) -> bool:
    """Refresh the shard's lease; False when `owner` no longer holds it."""
    result = session.execute(
        update(Shard)
        .where(col(Shard.id) == shard_id, col(Shard.lease_owner) == owner)
        .values(heartbeat_at=now)
    )
    return _changed(result)


def claim_planning(session: Session, *, job_id: str, now: datetime, stale: datetime) -> bool:
    """Take the lease of the job's planning unless a live task holds it. The heartbeat's
    time itself is the holder's token (`beat_planning` compares it)."""
    result = session.execute(
        update(ImportJob)
        .where(
            col(ImportJob.id) == job_id,
            or_(col(ImportJob.heartbeat_at).is_(None), col(ImportJob.heartbeat_at) < stale),
        )
        .values(heartbeat_at=now)
    )
    return _changed(result)


def beat_planning(session: Session, *, job_id: str, token: datetime, now: datetime) -> bool:
    """Move the planning lease from `token` (the holder's last heartbeat) to `now`; False
    when someone else took it meanwhile (or recovery released it)."""
    result = session.execute(
        update(ImportJob)
        .where(col(ImportJob.id) == job_id, col(ImportJob.heartbeat_at) == token)
        .values(heartbeat_at=now)
    )
    return _changed(result)


class ShardLease(NamedTuple):
    """What recovery needs to know about a pending shard of a running job."""

    id: str
    job_id: str
    seq: int
    dispatched_at: datetime  # the latest sending (its creation, before any resend)
    heartbeat_at: datetime | None


def unleased_shards(
    session: Session, *, stale: datetime, queue_empty: bool, limit: int
) -> list[ShardLease]:
    """Pending shards of running jobs to send again: no live task holds them, they were
    sent before `stale`, and either a task took them since (and died) or, with the queue
    empty, none did (their message cannot still be waiting)."""
    sent = func.coalesce(col(Shard.dispatched_at), col(Shard.created_at))
    heartbeat = col(Shard.heartbeat_at)
    taken_since_sent = heartbeat >= sent
    rows = session.execute(
        sa_select(col(Shard.id), col(Shard.job_id), col(Shard.seq), sent, heartbeat)
        .join(ImportJob, col(ImportJob.id) == Shard.job_id)
        .where(
            col(ImportJob.state).not_in(FINAL_STATE_VALUES),
            col(Shard.done) == False,  # noqa: E712
            or_(heartbeat.is_(None), heartbeat < stale),
            sent < stale,
            or_(heartbeat.is_not(None) & taken_since_sent, literal(queue_empty)),
        )
        .order_by(col(Shard.job_id), col(Shard.seq))
        .limit(limit)
    ).all()
    return [ShardLease(*row) for row in rows]


def mark_shard_resent(session: Session, *, lease: ShardLease, now: datetime) -> bool:
    """Record a resend of the shard, unless it changed since `lease` was read (a task
    claimed it, or another worker's recovery resent it first)."""
    heartbeat = col(Shard.heartbeat_at)
    result = session.execute(
        update(Shard)
        .where(
            col(Shard.id) == lease.id,
            col(Shard.done) == False,  # noqa: E712
            func.coalesce(col(Shard.dispatched_at), col(Shard.created_at)) == lease.dispatched_at,
            heartbeat.is_(None) if lease.heartbeat_at is None else heartbeat == lease.heartbeat_at,
        )
        .values(dispatched_at=now)
    )
    return _changed(result)


def unplanned_jobs(session: Session, *, stale: datetime) -> Sequence[ImportJob]:
    """Running jobs whose listing is not done and whose planning no live task holds."""
    return session.exec(
        select(ImportJob).where(
            col(ImportJob.state).not_in(FINAL_STATE_VALUES),
            col(ImportJob.listing_done) == False,  # noqa: E712
            or_(col(ImportJob.heartbeat_at).is_(None), col(ImportJob.heartbeat_at) < stale),
        )
    ).all()


def unfinished_jobs(
    session: Session, *, stale: datetime, claim_stale: datetime
) -> Sequence[ImportJob]:
    """Running jobs with listing done and every shard done that nobody is finishing: not
    claimed (or claimed before `claim_stale`), and not sent to be finished since `stale`."""
    pending = (
        sa_select(col(Shard.id))
        .where(col(Shard.job_id) == col(ImportJob.id), col(Shard.done) == False)  # noqa: E712
        .exists()
    )
    return session.exec(
        select(ImportJob).where(
            col(ImportJob.state).not_in(FINAL_STATE_VALUES),
            col(ImportJob.listing_done) == True,  # noqa: E712
            ~pending,
            or_(col(ImportJob.finishing_at).is_(None), col(ImportJob.finishing_at) < claim_stale),
            or_(col(ImportJob.heartbeat_at).is_(None), col(ImportJob.heartbeat_at) < stale),
        )
    ).all()


def mark_job_resent(
    session: Session, *, job_id: str, seen: datetime | None, now: datetime | None
) -> bool:
    """Set the job's lease time from `seen` (as read) to `now` (None: released), unless it
    changed meanwhile."""
    heartbeat = col(ImportJob.heartbeat_at)
    result = session.execute(
        update(ImportJob)
        .where(
            col(ImportJob.id) == job_id,
            heartbeat.is_(None) if seen is None else heartbeat == seen,
        )
        .values(heartbeat_at=now)
    )
    return _changed(result)
