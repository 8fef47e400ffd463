"""`datasets/{id}/drafts`: open, list, update and close a dataset's drafts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from metadata import repository as repo
from metadata.models import Draft, DraftStatus, utcnow
from tensorbay_api.deps import ContainerDep, PageDep, WorkspaceDep
from tensorbay_api.errors import TensorBayError, invalid
from tensorbay_api.versions import (
    MAIN,
    ROOT_COMMIT_ID,
    author_of,
    find_dataset,
    find_draft,
    paged,
    seconds,
)

router = APIRouter()


def _draft_public(s: Session, draft: Draft) -> dict[str, Any]:
    return {
        "number": draft.number,
        "title": draft.title,
        "description": draft.description,
        "branchName": draft.branch_name,
        "status": draft.status,
        "parentCommitId": draft.parent_commit_id or ROOT_COMMIT_ID,
        "author": {"name": draft.author, "date": seconds(draft.created_at)},
        "updatedAt": seconds(draft.updated_at),
    }


class DraftBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    title: str = Field(min_length=1, max_length=2000)
    branch_name: str = Field(default=MAIN, alias="branchName")
    description: str = ""


@router.post("/datasets/{dataset_id}/drafts")
def create_draft(
    dataset_id: str,
    body: Annotated[DraftBody, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    if body.branch_name != MAIN:
        raise invalid(f"branch {body.branch_name!r} does not exist: Bayport keeps {MAIN!r} only")
    for _ in range(3):  # two drafts made at once: the loser takes the next number
        with container.db.uow() as uow:
            s = uow.session
            dataset = find_dataset(s, workspace_id, dataset_id)
            last = s.exec(
                select(func.max(Draft.number)).where(Draft.dataset_id == dataset.id)
            ).one()
            number = int(last or 0) + 1
            s.add(
                Draft(
                    dataset_id=dataset.id,
                    number=number,
                    title=body.title,
                    description=body.description,
                    branch_name=MAIN,
                    parent_commit_id=dataset.head_commit_id,
                    author=author_of(s, workspace_id),
                )
            )
            try:
                uow.commit()
            except IntegrityError:
                continue
            return {"draftNumber": number}
    raise TensorBayError(409, "drafts were being made at the same time: try again")


@router.get("/datasets/{dataset_id}/drafts")
def list_drafts(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    status: Annotated[str | None, Query()] = None,
    branch_name: Annotated[str | None, Query(alias="branchName")] = None,
    draft_number: Annotated[int | None, Query(alias="draftNumber")] = None,
) -> dict[str, Any]:
    offset, limit = page
    with container.db.uow() as uow:
        s = uow.session
        dataset = find_dataset(s, workspace_id, dataset_id)
        query = select(Draft).where(Draft.dataset_id == dataset.id)
        if status is not None and status.upper() != "ALL":
            if status.upper() not in DraftStatus.__members__:
                raise invalid(f"status must be OPEN, COMMITTED, CLOSED or ALL, not {status!r}")
            query = query.where(Draft.status == status.upper())
        if branch_name is not None:
            query = query.where(Draft.branch_name == branch_name)
        if draft_number is not None:
            query = query.where(Draft.number == draft_number)
        found = s.exec(query.order_by(col(Draft.number))).all()
        items = [_draft_public(s, d) for d in found[offset : offset + limit]]
    return paged("drafts", items, len(found), offset)


class DraftPatch(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    title: str | None = Field(default=None, min_length=1, max_length=2000)
    description: str | None = None
    status: str | None = None


@router.patch("/datasets/{dataset_id}/drafts/{number}")
def update_draft(
    dataset_id: str,
    number: int,
    body: Annotated[DraftPatch, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    """`update_draft` (title, description) and `close_draft` (status CLOSED: the objects it
    registered that no job took yet are dropped; its running imports go on)."""
    if body.status is not None and body.status != DraftStatus.CLOSED.value:
        raise invalid(f"status can only be set to CLOSED, not {body.status!r}")
    with container.db.uow() as uow:
        s = uow.session
        dataset = find_dataset(s, workspace_id, dataset_id)
        draft = find_draft(s, dataset, number)
        if body.title is not None:
            draft.title = body.title
        if body.description is not None:
            draft.description = body.description
        if body.status is not None:
            draft.status = DraftStatus.CLOSED.value
            repo.drop_waiting_draft_objects(s, dataset_id=dataset.id, draft_number=number)
        draft.updated_at = utcnow()
        s.add(draft)
        uow.commit()
    return {}
