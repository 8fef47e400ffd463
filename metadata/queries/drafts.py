"""Drafts (the TensorBay-compatible API): objects registered into a draft's segment wait,
are gathered into jobs, and are dropped when the draft closes. Helpers take a session and
keyword arguments; none commits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from metadata.models import Dataset, Draft, DraftBatch, DraftObject


def register_draft_objects(
    session: Session,
    *,
    dataset_id: str,
    draft_number: int,
    segment_name: str,
    objects: Sequence[tuple[str, str, dict[str, Any] | None]],
) -> None:
    """Hold `(cloud_path, remote_path, label)` objects (distinct remote paths) for the
    draft's segment until they are gathered into a job; one registered again before that
    replaces the waiting one. Takes no lock but the rows' own: registrations into a segment
    run side by side. The caller then asks for a gathering (`flag_draft_batch`)."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = datetime.now(tz=UTC)
    stmt = insert_(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[
            table.c.dataset_id,
            table.c.draft_number,
            table.c.segment_name,
            table.c.name_sha256,
        ],
        index_where=table.c.job_id.is_(None),
        set_={
            "cloud_path": stmt.excluded.cloud_path,
            "remote_path": stmt.excluded.remote_path,
            "label": stmt.excluded.label,
            "created_at": stmt.excluded.created_at,
        },
    )
    session.execute(
        stmt,
        [
            {
                "dataset_id": dataset_id,
                "draft_number": draft_number,
                "segment_name": segment_name,
                "cloud_path": cloud,
                "remote_path": remote,
                "name_sha256": hashlib.sha256(remote.encode()).hexdigest(),
                "label": label,
                "job_id": None,
                "created_at": now,
            }
            for cloud, remote, label in objects
        ],
    )


def flag_draft_batch(
    session: Session, *, dataset_id: str, draft_number: int, segment_name: str
) -> bool:
    """Mark the segment's gathering as queued unless it is; True when this call did (the
    caller then sends it). Called after the registration committed. Found queued, the
    gathering has not yet stood its mark down, and looks only after it does (importer/
    drafts.py): it will see what was registered. Writes nothing then: the common case, one
    gathering serving many registrations. Of concurrent callers, one flips the mark."""
    batch = DraftBatch.__table__  # type: ignore[attr-defined]
    where = (
        batch.c.dataset_id == dataset_id,
        batch.c.draft_number == draft_number,
        batch.c.segment_name == segment_name,
    )
    now = datetime.now(tz=UTC)
    row = session.execute(sa_select(batch.c.queued).where(*where)).first()
    if row is not None and row[0]:
        return False  # queued: a read is enough (the common case)
    if row is not None:
        # Of concurrent callers one flips it; the others wait for it, then find it queued.
        result: Any = session.execute(
            update(batch)
            .where(*where, batch.c.queued.is_(False))
            .values(queued=True, updated_at=now)
        )
        return int(result.rowcount or 0) == 1
    # The segment's first registration makes its batch row, queued (or finds that a
    # concurrent one just did).
    dialect = session.get_bind().dialect.name
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    made = session.execute(
        insert_(batch)
        .values(
            dataset_id=dataset_id,
            draft_number=draft_number,
            segment_name=segment_name,
            queued=True,
            updated_at=now,
        )
        .on_conflict_do_nothing()
        .returning(batch.c.queued)
    ).first()
    return made is not None


def clear_draft_batch(
    session: Session, *, dataset_id: str, draft_number: int, segment_name: str
) -> None:
    """A gathering stands its queued mark down before it looks (see importer/drafts.py)."""
    session.execute(
        update(DraftBatch)
        .where(
            col(DraftBatch.dataset_id) == dataset_id,
            col(DraftBatch.draft_number) == draft_number,
            col(DraftBatch.segment_name) == segment_name,
        )
        .values(queued=False, updated_at=datetime.now(tz=UTC))
    )


def _waiting(dataset_id: str, draft_number: int, segment_name: str | None) -> Any:
    table = DraftObject.__table__  # type: ignore[attr-defined]
    where = [
        table.c.dataset_id == dataset_id,
        table.c.draft_number == draft_number,
        table.c.job_id.is_(None),
    ]
    if segment_name is not None:
        where.append(table.c.segment_name == segment_name)
    return where


def waiting_draft_objects(
    session: Session, *, dataset_id: str, draft_number: int, segment_name: str | None = None
) -> int:
    """How many registered objects wait to be gathered (in one segment, or the draft)."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    where = _waiting(dataset_id, draft_number, segment_name)
    return int(
        session.execute(sa_select(func.count()).select_from(table).where(*where)).scalar_one()
    )


def waiting_draft_segments(session: Session, *, dataset_id: str, draft_number: int) -> list[str]:
    table = DraftObject.__table__  # type: ignore[attr-defined]
    where = _waiting(dataset_id, draft_number, None)
    rows = session.execute(sa_select(table.c.segment_name).where(*where).distinct()).all()
    return sorted(r[0] for r in rows)


def assign_draft_objects(
    session: Session, *, dataset_id: str, draft_number: int, segment_name: str, job_id: str
) -> int:
    """Give the segment's waiting objects (one per name: the unique index sees to that) to
    `job_id`; their labels stay with them (`draft_labels`). Returns how many it took."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    where = _waiting(dataset_id, draft_number, segment_name)
    result: Any = session.execute(update(table).where(*where).values(job_id=job_id))
    return int(result.rowcount or 0)


def draft_objects_outside(session: Session, *, job_id: str, prefix: str) -> int:
    """How many of a job's registered objects have a cloud path outside `prefix`."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    outside = func.substr(table.c.cloud_path, 1, len(prefix)) != prefix
    count = session.execute(
        sa_select(func.count()).select_from(table).where(table.c.job_id == job_id, outside)
    ).scalar_one()
    return int(count)


def draft_labels(
    session: Session, *, job_id: str, names: Sequence[str]
) -> dict[str, dict[str, Any] | None]:
    """The labels sent with a job's registered objects, by name (as `import_labels`)."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    hashes = [hashlib.sha256(n.encode()).hexdigest() for n in names]
    rows = session.execute(
        sa_select(table.c.remote_path, table.c.label).where(
            table.c.job_id == job_id, table.c.name_sha256.in_(hashes)
        )
    ).all()
    return {str(name): dict(label) if label is not None else None for name, label in rows}


def draft_objects_page(
    session: Session, *, job_id: str, after_id: int, limit: int
) -> list[tuple[int, str, str]]:
    """`(id, cloud_path, remote_path)` of a job's registered objects, in the order they came."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    rows = session.execute(
        sa_select(table.c.id, table.c.cloud_path, table.c.remote_path)
        .where(table.c.job_id == job_id, table.c.id > after_id)
        .order_by(table.c.id)
        .limit(limit)
    ).all()
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def draft_job_ids(session: Session, *, dataset_id: str, draft_number: int) -> list[str]:
    """The jobs the draft's registered objects were gathered into."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    rows = session.execute(
        sa_select(table.c.job_id)
        .where(
            table.c.dataset_id == dataset_id,
            table.c.draft_number == draft_number,
            table.c.job_id.is_not(None),
        )
        .distinct()
    ).all()
    return [str(r[0]) for r in rows]


def claim_stale_draft_batches(session: Session, *, stale: datetime, now: datetime) -> list[str]:
    """Batch keys (`dataset:draft:segment`) of gatherings queued before `stale` and not
    heard of since, marked as sent again at `now` (so concurrent sweeps send each once)."""
    rows = session.exec(
        select(DraftBatch)
        .where(col(DraftBatch.queued).is_(True), col(DraftBatch.updated_at) < stale)
        .with_for_update(skip_locked=True)
    ).all()
    for batch in rows:
        batch.updated_at = now
        session.add(batch)
    return [f"{b.dataset_id}:{b.draft_number}:{b.segment_name}" for b in rows]


def drop_waiting_draft_objects(session: Session, *, dataset_id: str, draft_number: int) -> int:
    """A closed draft's objects that no job took: dropped, and its gatherings stood down."""
    table = DraftObject.__table__  # type: ignore[attr-defined]
    result: Any = session.execute(delete(table).where(*_waiting(dataset_id, draft_number, None)))
    session.execute(
        update(DraftBatch)
        .where(
            col(DraftBatch.dataset_id) == dataset_id, col(DraftBatch.draft_number) == draft_number
        )
        .values(queued=False)
    )
    return int(result.rowcount or 0)


def get_draft(
    session: Session, *, dataset_id: str, number: int, share: bool = False
) -> Draft | None:
    """`share`: read FOR SHARE, as a registration into the draft must (importer/drafts.py)."""
    query = select(Draft).where(Draft.dataset_id == dataset_id, Draft.number == number)
    return session.exec(query.with_for_update(read=True) if share else query).first()


def last_draft_number(session: Session, *, dataset_id: str) -> int:
    """The dataset's highest draft number; 0 before its first draft."""
    last = session.exec(select(func.max(Draft.number)).where(Draft.dataset_id == dataset_id)).one()
    return int(last or 0)


def list_drafts(
    session: Session,
    *,
    dataset_id: str,
    status: str | None = None,
    branch_name: str | None = None,
    number: int | None = None,
) -> Sequence[Draft]:
    """The dataset's drafts by number, only those of `status`, `branch_name`, `number` when
    given."""
    query = select(Draft).where(Draft.dataset_id == dataset_id)
    if status is not None:
        query = query.where(Draft.status == status)
    if branch_name is not None:
        query = query.where(Draft.branch_name == branch_name)
    if number is not None:
        query = query.where(Draft.number == number)
    return session.exec(query.order_by(col(Draft.number))).all()


def lock_for_commit(session: Session, *, dataset_id: str, draft_number: int) -> None:
    """Lock the dataset's row, then the draft's, FOR UPDATE: commits of one dataset go one
    after the other, and a registration (which reads the draft FOR SHARE) waits for this."""
    session.exec(select(Dataset).where(Dataset.id == dataset_id).with_for_update()).first()
    session.exec(
        select(Draft)
        .where(Draft.dataset_id == dataset_id, Draft.number == draft_number)
        .with_for_update()
    ).first()
