"""`datasets/{id}/commits` and `branches`: commit a draft once its objects are imported, read
the history; Bayport keeps one branch, `main`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field

from metadata.models import Commit
from services import drafts
from tensorbay_api.deps import ContainerDep, PageDep, WorkspaceDep
from tensorbay_api.errors import TensorBayError, not_found
from tensorbay_api.versions import (
    MAIN,
    ROOT_COMMIT_ID,
    find_dataset,
    paged,
    seconds,
)

router = APIRouter()


class CommitBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    title: str = Field(min_length=1, max_length=2000)
    draft_number: int = Field(alias="draftNumber", ge=1)
    description: str = ""
    tag: str | None = Field(default=None, max_length=200)


@router.post("/datasets/{dataset_id}/commits")
async def commit_draft(
    dataset_id: str,
    body: Annotated[CommitBody, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    """Commit the draft once every object it registered is imported: waits for that up to
    `commit_wait_seconds`, then answers 503 with Retry-After (the SDK retries a POST).
    The wait holds no thread (services/drafts.py), and the request holds one of its
    workspace's places meanwhile (edge/bulkhead.py), so waiting commits cannot take the
    threads other calls need."""
    try:
        committed = await drafts.commit_draft(
            container.ctx,
            workspace_id=workspace_id,
            dataset_id=dataset_id,
            draft_number=body.draft_number,
            title=body.title,
            description=body.description,
            tag=body.tag,
            wait_seconds=container.settings.commit_wait_seconds,
        )
    except drafts.DraftImporting as exc:
        raise TensorBayError(
            503, exc.message, code="DraftImporting", retry_after=exc.retry_after
        ) from exc
    return {
        "commitId": committed.commit_id,
        "failedObjects": committed.failed_objects,
        "jobs": committed.jobs,
    }


def _commit_public(commit: Commit, *, name: str | None = None) -> dict[str, Any]:
    body = {
        "commitId": commit.id,
        "parentCommitId": commit.parent_commit_id or ROOT_COMMIT_ID,
        "title": commit.title,
        "description": commit.description,
        "committer": {"name": commit.committer, "date": seconds(commit.created_at)},
    }
    return {"name": name, **body} if name is not None else body


@router.get("/datasets/{dataset_id}/commits")
def list_commits(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    commit: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """The head's history, newest first (from `commit` when given)."""
    offset, limit = page
    with container.db.uow() as uow:
        s = uow.session
        dataset = find_dataset(s, workspace_id, dataset_id)
        history: list[Commit] = []
        at = commit if commit not in (None, MAIN) else dataset.head_commit_id
        while at:
            found = s.get(Commit, at)
            if found is None or found.dataset_id != dataset.id:
                if not history:
                    raise not_found(f"commit {at!r}")
                break
            history.append(found)
            at = found.parent_commit_id
        items = [_commit_public(c) for c in history[offset : offset + limit]]
    return paged("commits", items, len(history), offset)


@router.get("/datasets/{dataset_id}/branches")
def list_branches(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    name: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    offset, _limit = page
    with container.db.uow() as uow:
        s = uow.session
        dataset = find_dataset(s, workspace_id, dataset_id)
        if name is not None and name != MAIN:
            return paged("branches", [], 0, offset)
        head = s.get(Commit, dataset.head_commit_id) if dataset.head_commit_id else None
        branch = (
            _commit_public(head, name=MAIN)
            if head is not None
            else {"name": MAIN, "commitId": ROOT_COMMIT_ID}
        )
    return paged("branches", [branch] if offset == 0 else [], 1, offset)
