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
from sqlmodel import Session

from metadata.db import Database
from metadata.models import Commit, Dataset, Draft
from services import drafts, lookup
from tensorbay_api.errors import invalid, not_found

ROOT_COMMIT_ID = "0" * 32  # a dataset before its first commit (the SDK's ROOT_COMMIT_ID)
MAIN = drafts.MAIN  # the one branch Bayport keeps


def seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def paged(key: str, items: list[Any], total: int, offset: int) -> dict[str, Any]:
    return {key: items, "offset": offset, "recordSize": len(items), "totalCount": total}


# The lookups are the services' (services/lookup.py): a missing dataset or draft is NotFound,
# a draft no longer open Invalid, which the app answers as 404 ResourceNotExist and 400
# InvalidParamsValue.
def find_dataset(s: Session, workspace_id: str, dataset_id: str) -> Dataset:
    return lookup.dataset_by_id(s, workspace_id=workspace_id, dataset_id=dataset_id)


def find_draft(
    s: Session, dataset: Dataset, number: int, *, open_only: bool = True, share: bool = False
) -> Draft:
    """`share`: read FOR SHARE, as a registration into the draft must (drafts.register)."""
    return lookup.draft_of(s, dataset, number, open_only=open_only, share=share)


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


def read_dataset_at(db: Database, workspace_id: str, dataset_id: str, version: Version) -> Dataset:
    """`dataset_at` in a transaction of its own: for a read that needs the dataset only."""
    with db.uow() as uow:
        return dataset_at(uow.session, workspace_id, dataset_id, version)
