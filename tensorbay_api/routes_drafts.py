"""`datasets/{id}/drafts`: open, list, update and close a dataset's drafts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field

from metadata.models import Draft
from services import drafts
from tensorbay_api.deps import ContainerDep, PageDep, WorkspaceDep
from tensorbay_api.versions import MAIN, ROOT_COMMIT_ID, paged, seconds

router = APIRouter()


def _draft_public(draft: Draft) -> dict[str, Any]:
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
    number = drafts.create_draft(
        workspace_id=workspace_id,
        db=container.db,
        dataset_id=dataset_id,
        title=body.title,
        description=body.description,
        branch_name=body.branch_name,
    )
    return {"draftNumber": number}


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
    found = drafts.list_drafts(
        workspace_id=workspace_id,
        db=container.db,
        dataset_id=dataset_id,
        status=status,
        branch_name=branch_name,
        number=draft_number,
    )
    items = [_draft_public(d) for d in found[offset : offset + limit]]
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
    drafts.update_draft(
        workspace_id=workspace_id,
        db=container.db,
        dataset_id=dataset_id,
        number=number,
        title=body.title,
        description=body.description,
        status=body.status,
    )
    return {}
