"""What a use case's request names, found in the caller's session: a dataset of the caller's
workspace (by name or by id), one of its drafts, the workspace's name. A missing one is
NotFound, a draft that is no longer open Invalid (importer/errors.py), as each face maps them."""

from __future__ import annotations

from sqlmodel import Session

from importer.errors import Invalid, NotFound
from metadata.models import Dataset, Draft, DraftStatus, Workspace
from metadata.queries import datasets
from metadata.queries import drafts as drafts_q


def dataset_named(s: Session, *, workspace_id: str, name: str) -> Dataset:
    dataset = datasets.get_dataset(s, workspace_id=workspace_id, name=name)
    if dataset is None:
        raise NotFound(f"dataset {name!r} does not exist")
    return dataset


def dataset_by_id(s: Session, *, workspace_id: str, dataset_id: str) -> Dataset:
    """Another workspace's dataset is not found, as one that does not exist."""
    dataset = datasets.get_dataset_by_id(s, workspace_id=workspace_id, dataset_id=dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {dataset_id!r} does not exist")
    return dataset


def draft_of(
    s: Session, dataset: Dataset, number: int, *, open_only: bool = True, share: bool = False
) -> Draft:
    """`share`: read FOR SHARE, as a registration into the draft must (importer/drafts.py's
    register): a commit locks it for update, so nothing slips in after the commit's check."""
    draft = drafts_q.get_draft(s, dataset_id=dataset.id, number=number, share=share)
    if draft is None:
        raise NotFound(f"draft {number} of dataset {dataset.name!r} does not exist")
    if open_only and draft.status != DraftStatus.OPEN.value:
        raise Invalid(f"draft {number} of dataset {dataset.name!r} is {draft.status}, not OPEN")
    return draft


def author_of(s: Session, workspace_id: str) -> str:
    """Who made a draft or a commit, as TensorBay names them: the workspace's name."""
    workspace = s.get(Workspace, workspace_id)
    return workspace.name if workspace else ""
