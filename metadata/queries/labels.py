"""Labels: the (type, category) facts of a segment's objects and their statistics, and the
labels read from one file for a segment (COCO). Helpers take a session and keyword arguments;
none commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, tuple_
from sqlmodel import Session, col, select

from metadata.models import ImportLabel, LabelFact, LedgerEntry
from metadata.queries._common import PRESENT


def replace_label_facts(
    session: Session, *, segment_id: str, facts: dict[str, list[tuple[str, str | None]]]
) -> None:
    """Rewrite the (type, category) facts of the given entries (remote_path -> facts)."""
    if not facts:
        return
    session.execute(
        delete(LabelFact).where(
            col(LabelFact.segment_id) == segment_id, col(LabelFact.remote_path).in_(list(facts))
        )
    )
    rows = [
        {"segment_id": segment_id, "remote_path": path, "label_type": t, "category": c}
        for path, pairs in facts.items()
        for t, c in pairs
    ]
    if rows:
        session.execute(insert(LabelFact.__table__), rows)  # type: ignore[attr-defined]


def label_statistics(
    session: Session, *, segment_ids: Sequence[str]
) -> list[tuple[str, str | None, int]]:
    """(type, category, annotations) over the objects present in the segments."""
    present = select(LedgerEntry.segment_id, LedgerEntry.remote_path).where(
        col(LedgerEntry.segment_id).in_(segment_ids), col(LedgerEntry.outcome).in_(PRESENT)
    )
    rows = session.exec(
        select(LabelFact.label_type, LabelFact.category, func.count())
        .where(
            col(LabelFact.segment_id).in_(segment_ids),
            tuple_(LabelFact.segment_id, LabelFact.remote_path).in_(present),
        )
        .group_by(col(LabelFact.label_type), col(LabelFact.category))
        .order_by(col(LabelFact.label_type), col(LabelFact.category))
    ).all()
    return [(t, c, int(n)) for t, c, n in rows]


# --- labels read from one file for a segment (COCO) -----------------------------------


def clear_import_labels(session: Session, *, job_id: str) -> None:
    session.execute(delete(ImportLabel).where(col(ImportLabel.job_id) == job_id))


def add_import_labels(
    session: Session, *, job_id: str, labels: Sequence[tuple[str, dict[str, Any] | None]]
) -> None:
    if labels:
        session.execute(
            insert(ImportLabel.__table__),  # type: ignore[attr-defined]  # rows are complete
            [{"job_id": job_id, "name": name, "label": label} for name, label in labels],
        )


def import_labels(
    session: Session, *, job_id: str, names: Sequence[str]
) -> dict[str, dict[str, Any] | None]:
    rows = session.exec(
        select(ImportLabel.name, ImportLabel.label).where(
            ImportLabel.job_id == job_id, col(ImportLabel.name).in_(list(names))
        )
    ).all()
    return {name: dict(label) if label is not None else None for name, label in rows}


def import_labels_without_object(
    session: Session, *, job_id: str, segment_id: str, after_id: int, limit: int
) -> Sequence[ImportLabel]:
    present = select(LedgerEntry.remote_path).where(LedgerEntry.segment_id == segment_id)
    return session.exec(
        select(ImportLabel)
        .where(
            ImportLabel.job_id == job_id,
            col(ImportLabel.id) > after_id,
            col(ImportLabel.name).not_in(present),
        )
        .order_by(col(ImportLabel.id))
        .limit(limit)
    ).all()
