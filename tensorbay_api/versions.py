"""What a TensorBay call names: a dataset of the caller's workspace, one of its drafts, the
version a read is at; and the shapes its answers share (times, pages).

Versions: Bayport keeps one state of a dataset, its latest. A draft's registered objects
are imported into it while the draft is open, and a commit (once they are) names that state.
Reads at the head commit or at an open draft see it; a read at an older commit is refused
(InvalidParamsValue) rather than answered with data of another version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from sqlmodel import Session, select

from metadata.models import Commit, Dataset, Draft, DraftStatus, Workspace
from tensorbay_api.errors import invalid, not_found

ROOT_COMMIT_ID = "0" * 32  # a dataset before its first commit (the SDK's ROOT_COMMIT_ID)
MAIN = "main"


def seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def paged(key: str, items: list[Any], total: int, offset: int) -> dict[str, Any]:
    return {key: items, "offset": offset, "recordSize": len(items), "totalCount": total}


def find_dataset(s: Session, workspace_id: str, dataset_id: str) -> Dataset:
    dataset = s.get(Dataset, dataset_id)
    if dataset is None or dataset.workspace_id != workspace_id:
        raise not_found(f"dataset {dataset_id!r}")
    return dataset


def author_of(s: Session, workspace_id: str) -> str:
    workspace = s.get(Workspace, workspace_id)
    return workspace.name if workspace else ""


def find_draft(
    s: Session, dataset: Dataset, number: int, *, open_only: bool = True, share: bool = False
) -> Draft:
    """`share`: read FOR SHARE, as a registration into the draft must (drafts.register)."""
    query = select(Draft).where(Draft.dataset_id == dataset.id, Draft.number == number)
    draft = s.exec(query.with_for_update(read=True) if share else query).first()
    if draft is None:
        raise not_found(f"draft {number} of dataset {dataset.name!r}")
    if open_only and draft.status != DraftStatus.OPEN.value:
        raise invalid(f"draft {number} of dataset {dataset.name!r} is {draft.status}, not OPEN")
    return draft


@dataclass(frozen=True)
class Version:
    """The version a read names: a commit (or the branch `main`), or a draft."""

    commit: str | None
    draft_number: int | None


def version_query(
    commit: Annotated[str | None, Query()] = None,
    draft_number: Annotated[int | None, Query(alias="draftNumber")] = None,
) -> Version:
    return Version(commit, draft_number)


VersionDep = Annotated[Version, Depends(version_query)]


def dataset_at(s: Session, workspace_id: str, dataset_id: str, version: Version) -> Dataset:
    """The dataset, if it is read at the version Bayport holds (see the docstring)."""
    dataset = find_dataset(s, workspace_id, dataset_id)
    if version.draft_number is not None:
        find_draft(s, dataset, version.draft_number, open_only=False)
        return dataset
    commit = version.commit
    head = dataset.head_commit_id or ROOT_COMMIT_ID
    if commit is not None and commit not in (head, MAIN):
        known = s.get(Commit, commit)
        if known is None or known.dataset_id != dataset.id:
            raise not_found(f"commit {commit!r} of dataset {dataset.name!r}")
        raise invalid(
            f"commit {commit!r} is not the latest of dataset {dataset.name!r} ({head}): "
            "Bayport keeps a dataset's latest version only"
        )
    return dataset
