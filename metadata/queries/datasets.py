"""Datasets and their segments: found, listed, made on first use, the objects a segment
holds, and the job running on it. Helpers take a session and keyword arguments; none commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func
from sqlmodel import Session, col, select

from metadata.models import Dataset, ImportJob, LabelFact, LedgerEntry, Segment
from metadata.queries._common import FINAL_STATE_VALUES, PRESENT


def get_dataset(session: Session, *, workspace_id: str, name: str) -> Dataset | None:
    return session.exec(
        select(Dataset).where(Dataset.workspace_id == workspace_id, Dataset.name == name)
    ).first()


def list_datasets(session: Session, *, workspace_id: str) -> Sequence[Dataset]:
    return session.exec(
        select(Dataset).where(Dataset.workspace_id == workspace_id).order_by(col(Dataset.name))
    ).all()


def get_or_create_segment(session: Session, *, dataset_id: str, name: str) -> Segment:
    found = get_segment(session, dataset_id=dataset_id, name=name)
    if found:
        return found
    segment = Segment(dataset_id=dataset_id, name=name)
    session.add(segment)
    session.flush()
    return segment


def running_job_on_segment(session: Session, *, segment_id: str) -> ImportJob | None:
    """The segment's unfinished job, if any; locks the segment row so that two submissions
    for one segment are decided one after the other."""
    session.exec(select(Segment).where(Segment.id == segment_id).with_for_update()).first()
    return session.exec(
        select(ImportJob).where(
            ImportJob.segment_id == segment_id, col(ImportJob.state).not_in(FINAL_STATE_VALUES)
        )
    ).first()


def segment_names(session: Session, *, dataset_id: str) -> list[str]:
    return list(session.exec(select(Segment.name).where(Segment.dataset_id == dataset_id)))


def get_segment(session: Session, *, dataset_id: str, name: str) -> Segment | None:
    return session.exec(
        select(Segment).where(Segment.dataset_id == dataset_id, Segment.name == name)
    ).first()


def segment_data(
    session: Session,
    *,
    segment_id: str,
    offset: int,
    limit: int,
    category: str | None = None,
    label_type: str | None = None,
) -> Sequence[LedgerEntry]:
    """The segment's objects (present ones), optionally only those with an annotation of
    `label_type` and/or `category`."""
    query = select(LedgerEntry).where(
        LedgerEntry.segment_id == segment_id, col(LedgerEntry.outcome).in_(PRESENT)
    )
    if category is not None or label_type is not None:
        facts = select(LabelFact.remote_path).where(LabelFact.segment_id == segment_id)
        if category is not None:
            facts = facts.where(LabelFact.category == category)
        if label_type is not None:
            facts = facts.where(LabelFact.label_type == label_type)
        query = query.where(col(LedgerEntry.remote_path).in_(facts))
    return session.exec(
        query.order_by(col(LedgerEntry.remote_path)).offset(offset).limit(limit)
    ).all()


def count_segment_data(session: Session, *, segment_id: str) -> int:
    """How many objects the segment holds (present ones)."""
    return int(
        session.exec(
            select(func.count()).where(
                LedgerEntry.segment_id == segment_id, col(LedgerEntry.outcome).in_(PRESENT)
            )
        ).one()
    )


def get_dataset_by_id(session: Session, *, workspace_id: str, dataset_id: str) -> Dataset | None:
    """The dataset of that id if it is the workspace's: another workspace's is not found."""
    dataset = session.get(Dataset, dataset_id)
    return dataset if dataset is not None and dataset.workspace_id == workspace_id else None


def segment_names_of(session: Session, *, dataset_ids: Sequence[str]) -> dict[str, list[str]]:
    """Each dataset's segment names, sorted (one query for a listing); [] for one without."""
    names: dict[str, list[str]] = {dataset_id: [] for dataset_id in dataset_ids}
    if names:
        rows = session.exec(
            select(Segment.dataset_id, Segment.name)
            .where(col(Segment.dataset_id).in_(list(names)))
            .order_by(col(Segment.name))
        ).all()
        for dataset_id, name in rows:
            names[dataset_id].append(name)
    return names
