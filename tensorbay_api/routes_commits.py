"""`datasets/{id}/commits` and `branches`: commit a draft once its objects are imported, read
the history; Bayport keeps one branch, `main`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from bayport.wiring import Container
from edge.waiting import settled_within
from importer import drafts
from metadata import repository as repo
from metadata.models import Commit, Dataset, Draft, DraftStatus, utcnow
from tensorbay_api.deps import ContainerDep, PageDep, WorkspaceDep
from tensorbay_api.errors import TensorBayError, not_found
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
    The wait holds no thread (it sleeps on the event loop; each look at the draft takes a
    thread for one query), and the request holds one of its workspace's places meanwhile
    (edge/bulkhead.py), so waiting commits cannot take the threads other calls need."""
    progress = await run_in_threadpool(_nudge_draft, container, workspace_id, dataset_id, body)
    progress = await settled_within(
        progress,
        lambda: drafts.progress(
            container.ctx, dataset_id=dataset_id, draft_number=body.draft_number
        ),
        settled=lambda p: p.settled,
        seconds=container.settings.commit_wait_seconds,
    )
    return await run_in_threadpool(
        _commit_draft, container, workspace_id, dataset_id, body, progress
    )


def _nudge_draft(
    container: Container, workspace_id: str, dataset_id: str, body: CommitBody
) -> drafts.DraftProgress:
    ctx = container.ctx
    with container.db.uow() as uow:
        dataset = find_dataset(uow.session, workspace_id, dataset_id)
        find_draft(uow.session, dataset, body.draft_number)
    drafts.nudge(ctx, dataset_id=dataset_id, draft_number=body.draft_number)
    return drafts.progress(ctx, dataset_id=dataset_id, draft_number=body.draft_number)


def _commit_draft(
    container: Container,
    workspace_id: str,
    dataset_id: str,
    body: CommitBody,
    progress: drafts.DraftProgress,
) -> dict[str, Any]:
    if not progress.settled:
        raise TensorBayError(
            503,
            f"draft {body.draft_number} is still importing ({progress.waiting} objects "
            f"waiting, {progress.running_jobs} import jobs running): commit again when "
            "they end",
            code="DraftImporting",
            retry_after=5,
        )
    with container.db.uow() as uow:
        s = uow.session
        dataset = find_dataset(s, workspace_id, dataset_id)
        s.exec(select(Dataset).where(Dataset.id == dataset.id).with_for_update()).first()
        s.exec(
            select(Draft)
            .where(Draft.dataset_id == dataset.id, Draft.number == body.draft_number)
            .with_for_update()
        ).first()
        draft = find_draft(s, dataset, body.draft_number)
        late = repo.waiting_draft_objects(s, dataset_id=dataset.id, draft_number=body.draft_number)
        if late:  # registered while the commit waited: they go into this version too
            raise TensorBayError(
                503,
                f"draft {body.draft_number}: {late} objects were registered while it was "
                "being committed: commit again when they are imported",
                code="DraftImporting",
                retry_after=1,
            )
        commit = Commit(
            dataset_id=dataset.id,
            draft_number=draft.number,
            parent_commit_id=dataset.head_commit_id,
            title=body.title,
            description=body.description,
            tag=body.tag,
            committer=author_of(s, workspace_id),
        )
        s.add(commit)
        draft.status = DraftStatus.COMMITTED.value
        draft.commit_id = commit.id
        draft.updated_at = utcnow()
        dataset.head_commit_id = commit.id
        s.add(draft)
        s.add(dataset)
        uow.commit()
        return {"commitId": commit.id, "failedObjects": progress.failed, "jobs": progress.jobs}


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
