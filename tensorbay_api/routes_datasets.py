"""`datasets` and what lies below one: drafts, segments, catalog, notes, the registration
of cloud files (`multi/cloud-callback`), commits, and reading the data back.

Versions: Bayport keeps one state of a dataset, its latest. A draft's registered objects
are imported into it while the draft is open, and a commit (once they are) names that state.
Reads at the head commit or at an open draft see it; a read at an older commit is refused
(InvalidParamsValue) rather than answered with data of another version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select
from starlette.concurrency import run_in_threadpool

from api.waiting import settled_within
from bayport.wiring import Container
from importer import drafts
from importer.manifest import NAME_PATTERN, SEGMENT_PATTERN
from importer.rules import key_problem
from labels.catalog import Catalog
from metadata import repository as repo
from metadata.models import (
    Commit,
    Dataset,
    Draft,
    DraftStatus,
    LedgerEntry,
    Segment,
    StorageConfig,
    Workspace,
    new_id,
    utcnow,
)
from tensorbay_api.deps import ContainerDep, PageDep, WorkspaceDep
from tensorbay_api.errors import TensorBayError, conflict, invalid, not_found
from tensorbay_api.files import FileUrls

router = APIRouter()

ROOT_COMMIT_ID = "0" * 32  # a dataset before its first commit (the SDK's ROOT_COMMIT_ID)
MAIN = "main"
MAX_OBJECTS_PER_CALL = 1000


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _paged(key: str, items: list[Any], total: int, offset: int) -> dict[str, Any]:
    return {key: items, "offset": offset, "recordSize": len(items), "totalCount": total}


# --- datasets --------------------------------------------------------------------------


class DatasetBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(pattern=NAME_PATTERN)
    type: int = 0
    alias: str = ""
    is_public: bool = Field(default=False, alias="isPublic")
    config_name: str | None = Field(default=None, alias="configName")


def _dataset_public(s: Session, dataset: Dataset) -> dict[str, Any]:
    config = s.get(StorageConfig, dataset.config_id) if dataset.config_id else None
    return {
        "id": dataset.id,
        "name": dataset.name,
        "type": 0,
        "alias": "",
        "isPublic": False,
        "defaultBranch": MAIN,
        "commitId": dataset.head_commit_id or ROOT_COMMIT_ID,
        "configName": config.name if config else None,
        "createdAt": _seconds(dataset.created_at),
    }


@router.post("/datasets")
def create_dataset(
    body: Annotated[DatasetBody, Body()], workspace_id: WorkspaceDep, container: ContainerDep
) -> dict[str, Any]:
    """A dataset on `configName`'s storage (the SDK's authorized storage): it lives at the
    config's filePath, where its drafts' objects are copied (or registered in place when
    they lie there already). Without `configName`, the dataset lives in Bayport's
    storage."""
    if body.type != 0:
        raise invalid("fusion datasets (type 1) are not supported: only type 0")
    with container.db.uow() as uow:
        s = uow.session
        if repo.get_dataset(s, workspace_id=workspace_id, name=body.name):
            raise conflict(f"dataset {body.name!r} already exists")
        dataset_id = new_id()
        if body.config_name is not None:
            config = repo.get_config(s, workspace_id=workspace_id, name=body.config_name)
            if config is None:
                raise not_found(f"storage config {body.config_name!r}")
            config_id, path = config.id, ""
        else:
            config_id, path = None, f"{workspace_id}/{dataset_id}/"
        s.add(
            Dataset(
                id=dataset_id,
                workspace_id=workspace_id,
                name=body.name,
                config_id=config_id,
                path=path,
            )
        )
        try:
            uow.commit()
        except IntegrityError as exc:
            raise conflict(f"dataset {body.name!r} already exists") from exc
    return {"id": dataset_id}


@router.get("/datasets")
def list_datasets(
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    name: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    offset, limit = page
    with container.db.uow() as uow:
        s = uow.session
        found = list(repo.list_datasets(s, workspace_id=workspace_id))
        if name is not None:  # exact: the SDK takes the first dataset it gets
            found = [d for d in found if d.name == name]
        items = [_dataset_public(s, d) for d in found[offset : offset + limit]]
    return _paged("datasets", items, len(found), offset)


def _dataset(s: Session, workspace_id: str, dataset_id: str) -> Dataset:
    dataset = s.get(Dataset, dataset_id)
    if dataset is None or dataset.workspace_id != workspace_id:
        raise not_found(f"dataset {dataset_id!r}")
    return dataset


@router.get("/datasets/{dataset_id}")
def get_dataset(
    dataset_id: str, workspace_id: WorkspaceDep, container: ContainerDep
) -> dict[str, Any]:
    with container.db.uow() as uow:
        return _dataset_public(uow.session, _dataset(uow.session, workspace_id, dataset_id))


# --- versions: drafts, commits, branches -------------------------------------------------


def _author(s: Session, workspace_id: str) -> str:
    workspace = s.get(Workspace, workspace_id)
    return workspace.name if workspace else ""


def _draft(
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


def _dataset_at(s: Session, workspace_id: str, dataset_id: str, version: Version) -> Dataset:
    """The dataset, if it is read at the version Bayport holds (see the docstring)."""
    dataset = _dataset(s, workspace_id, dataset_id)
    if version.draft_number is not None:
        _draft(s, dataset, version.draft_number, open_only=False)
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


def _draft_public(s: Session, draft: Draft) -> dict[str, Any]:
    return {
        "number": draft.number,
        "title": draft.title,
        "description": draft.description,
        "branchName": draft.branch_name,
        "status": draft.status,
        "parentCommitId": draft.parent_commit_id or ROOT_COMMIT_ID,
        "author": {"name": draft.author, "date": _seconds(draft.created_at)},
        "updatedAt": _seconds(draft.updated_at),
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
            dataset = _dataset(s, workspace_id, dataset_id)
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
                    author=_author(s, workspace_id),
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
        dataset = _dataset(s, workspace_id, dataset_id)
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
    return _paged("drafts", items, len(found), offset)


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
        dataset = _dataset(s, workspace_id, dataset_id)
        draft = _draft(s, dataset, number)
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
    (api/bulkhead.py), so waiting commits cannot take the threads other calls need."""
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
        dataset = _dataset(uow.session, workspace_id, dataset_id)
        _draft(uow.session, dataset, body.draft_number)
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
        dataset = _dataset(s, workspace_id, dataset_id)
        s.exec(select(Dataset).where(Dataset.id == dataset.id).with_for_update()).first()
        s.exec(
            select(Draft)
            .where(Draft.dataset_id == dataset.id, Draft.number == body.draft_number)
            .with_for_update()
        ).first()
        draft = _draft(s, dataset, body.draft_number)
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
            committer=_author(s, workspace_id),
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
        "committer": {"name": commit.committer, "date": _seconds(commit.created_at)},
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
        dataset = _dataset(s, workspace_id, dataset_id)
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
    return _paged("commits", items, len(history), offset)


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
        dataset = _dataset(s, workspace_id, dataset_id)
        if name is not None and name != MAIN:
            return _paged("branches", [], 0, offset)
        head = s.get(Commit, dataset.head_commit_id) if dataset.head_commit_id else None
        branch = (
            _commit_public(head, name=MAIN)
            if head is not None
            else {"name": MAIN, "commitId": ROOT_COMMIT_ID}
        )
    return _paged("branches", [branch] if offset == 0 else [], 1, offset)


# --- segments, catalog, notes -----------------------------------------------------------


@router.get("/datasets/{dataset_id}/segments")
def list_segments(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    version: VersionDep,
) -> dict[str, Any]:
    offset, limit = page
    with container.db.uow() as uow:
        s = uow.session
        dataset = _dataset_at(s, workspace_id, dataset_id, version)
        found = s.exec(
            select(Segment).where(Segment.dataset_id == dataset.id).order_by(col(Segment.name))
        ).all()
        items = [
            {"name": g.name, "description": g.description} for g in found[offset : offset + limit]
        ]
    return _paged("segments", items, len(found), offset)


class SegmentBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(pattern=SEGMENT_PATTERN)  # '' is the SDK's default segment
    draft_number: int = Field(alias="draftNumber", ge=1)
    description: str = ""


@router.post("/datasets/{dataset_id}/segments")
def create_segment(
    dataset_id: str,
    body: Annotated[SegmentBody, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    for _ in range(2):
        with container.db.uow() as uow:
            s = uow.session
            dataset = _dataset(s, workspace_id, dataset_id)
            _draft(s, dataset, body.draft_number)
            segment = repo.get_or_create_segment(s, dataset_id=dataset.id, name=body.name)
            if body.description:
                segment.description = body.description
                s.add(segment)
            try:
                uow.commit()
            except IntegrityError:
                continue  # made at the same time by another call: it is there
            return {}
    return {}


class CatalogBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    catalog: dict[str, Any]
    draft_number: int = Field(alias="draftNumber", ge=1)


@router.put("/datasets/{dataset_id}/labels/catalogs")
def put_catalog(
    dataset_id: str,
    body: Annotated[CatalogBody, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    """The catalog labels are checked against (objects imported after it is set)."""
    try:
        catalog = Catalog.model_validate(body.catalog)
    except ValueError as exc:
        raise invalid(f"catalog: {exc}") from exc
    with container.db.uow() as uow:
        s = uow.session
        dataset = _dataset(s, workspace_id, dataset_id)
        _draft(s, dataset, body.draft_number)
        dataset.catalog = catalog.model_dump(mode="json", by_alias=True, exclude_none=True)
        s.add(dataset)
        uow.commit()
    return {}


@router.get("/datasets/{dataset_id}/labels/catalogs")
def get_catalog(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    version: VersionDep,
) -> dict[str, Any]:
    with container.db.uow() as uow:
        s = uow.session
        dataset = _dataset_at(s, workspace_id, dataset_id, version)
        return {"catalog": dataset.catalog or {}}


class NotesBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    draft_number: int = Field(alias="draftNumber", ge=1)
    is_continuous: bool | None = Field(default=None, alias="isContinuous")
    bin_point_cloud_fields: list[str] | None = Field(default=None, alias="binPointCloudFields")


@router.patch("/datasets/{dataset_id}/notes")
def update_notes(
    dataset_id: str,
    body: Annotated[NotesBody, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    with container.db.uow() as uow:
        s = uow.session
        dataset = _dataset(s, workspace_id, dataset_id)
        _draft(s, dataset, body.draft_number)
        notes = dict(dataset.notes or {})
        if body.is_continuous is not None:
            notes["isContinuous"] = body.is_continuous
        if "bin_point_cloud_fields" in body.model_fields_set:
            notes["binPointCloudFields"] = body.bin_point_cloud_fields
        dataset.notes = notes
        s.add(dataset)
        uow.commit()
    return {}


@router.get("/datasets/{dataset_id}/notes")
def get_notes(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    version: VersionDep,
) -> dict[str, Any]:
    with container.db.uow() as uow:
        s = uow.session
        dataset = _dataset_at(s, workspace_id, dataset_id, version)
        return {"isContinuous": False, "binPointCloudFields": None, **(dataset.notes or {})}


# --- registering cloud files ------------------------------------------------------------


class CloudObject(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    cloud_path: str = Field(alias="cloudPath", min_length=1, max_length=4096)
    remote_path: str = Field(alias="remotePath", min_length=1, max_length=4096)
    label: dict[str, Any] | None = None


class CloudCallbackBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    segment_name: str = Field(alias="segmentName", pattern=SEGMENT_PATTERN)
    objects: list[CloudObject] = Field(min_length=1, max_length=MAX_OBJECTS_PER_CALL)
    delete_source: bool = Field(default=False, alias="deleteSource")
    draft_number: int = Field(alias="draftNumber", ge=1)


@router.put("/datasets/{dataset_id}/multi/cloud-callback")
def cloud_callback(
    dataset_id: str,
    body: Annotated[CloudCallbackBody, Body()],
    workspace_id: WorkspaceDep,
    container: ContainerDep,
) -> dict[str, Any]:
    """Register files of the dataset's storage config into a draft's segment: each
    `cloudPath` a key of the config's bucket (as `list_auth_data` lists it), copied into
    the dataset's storage path unless it lies there already. The call only stores them:
    a worker gathers the segment's waiting objects into one import job
    (importer/drafts.py). A bad object or label fails that object alone, in its job."""
    if body.delete_source:
        raise invalid("deleteSource: Bayport never deletes the files a client registers")
    objects: list[tuple[str, str, dict[str, Any] | None]] = []
    seen: dict[str, int] = {}
    for i, obj in enumerate(body.objects):
        if obj.remote_path in seen:
            raise invalid(
                f"objects[{i}].remotePath {obj.remote_path!r} is also objects"
                f"[{seen[obj.remote_path]}]'s: each name once per call"
            )
        seen[obj.remote_path] = i
        cloud_path = obj.cloud_path.lstrip("/")
        for field, value in (("cloudPath", cloud_path), ("remotePath", obj.remote_path)):
            problem = key_problem(value) or ("is a folder" if value.endswith("/") else None)
            if problem is not None:
                raise invalid(f"objects[{i}].{field} {value!r}: {problem}")
        objects.append((cloud_path, obj.remote_path, obj.label or None))
    with container.db.uow() as uow:  # one transaction: the call stays short
        s = uow.session
        dataset = _dataset(s, workspace_id, dataset_id)
        if dataset.config_id is None:
            raise invalid(
                f"dataset {dataset.name!r} has no storage config (created without "
                "configName): cloud files can only be registered into a dataset on the "
                "config that holds them"
            )
        draft = _draft(s, dataset, body.draft_number, share=True)
        if repo.get_segment(s, dataset_id=dataset.id, name=body.segment_name) is None:
            raise not_found(f"segment {body.segment_name!r} of dataset {dataset.name!r}")
        drafts.register(s, draft, segment_name=body.segment_name, objects=objects)
        uow.commit()
    drafts.request_gathering(
        container.ctx,
        dataset_id=dataset_id,
        draft_number=body.draft_number,
        segment_name=body.segment_name,
    )
    return {}


# --- reading data back ------------------------------------------------------------------


def _entries(
    s: Session, segment: Segment, remote_path: str | None, offset: int, limit: int
) -> tuple[list[LedgerEntry], int]:
    if remote_path is not None:
        entry = s.exec(
            select(LedgerEntry).where(
                LedgerEntry.segment_id == segment.id,
                LedgerEntry.remote_path == remote_path,
                col(LedgerEntry.outcome).in_(list(repo.PRESENT_OUTCOMES)),
            )
        ).first()
        return ([entry], 1) if entry is not None else ([], 0)
    rows = list(repo.segment_data(s, segment_id=segment.id, offset=offset, limit=limit))
    return rows, repo.count_segment_data(s, segment_id=segment.id)


@dataclass(frozen=True)
class DataQuery:
    """Which data a read asks for: a segment (one path of it), at a version."""

    segment_name: str
    remote_path: str | None
    version: Version


def data_query(
    segment_name: Annotated[str, Query(alias="segmentName")],
    version: VersionDep,
    remote_path: Annotated[str | None, Query(alias="remotePath")] = None,
) -> DataQuery:
    return DataQuery(segment_name, remote_path, version)


DataQueryDep = Annotated[DataQuery, Depends(data_query)]


def _read_data(
    container: Container, workspace_id: str, dataset_id: str, q: DataQuery, page: tuple[int, int]
) -> tuple[list[LedgerEntry], int, StorageConfig | None]:
    """A page of the segment's present entries, their total, and the dataset's config."""
    with container.db.uow() as uow:
        s = uow.session
        dataset = _dataset_at(s, workspace_id, dataset_id, q.version)
        segment = repo.get_segment(s, dataset_id=dataset.id, name=q.segment_name)
        if segment is None:
            raise not_found(f"segment {q.segment_name!r} of dataset {dataset.name!r}")
        rows, total = _entries(s, segment, q.remote_path, *page)
        config = s.get(StorageConfig, dataset.config_id) if dataset.config_id else None
    return rows, total, config


@router.get("/datasets/{dataset_id}/data/details")
def data_details(
    dataset_id: str,
    request: Request,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    q: DataQueryDep,
) -> dict[str, Any]:
    """The segment's data with their labels and a URL each, in path order."""
    rows, total, config = _read_data(container, workspace_id, dataset_id, q, page)
    urls = FileUrls(request, container, config)
    items = [
        {"remotePath": r.remote_path, "url": urls.url(r.dest_key), "label": r.label or {}}
        for r in rows
    ]
    return _paged("dataDetails", items, total, page[0])


@router.get("/datasets/{dataset_id}/data/urls")
def data_urls(
    dataset_id: str,
    request: Request,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    q: DataQueryDep,
) -> dict[str, Any]:
    rows, total, config = _read_data(container, workspace_id, dataset_id, q, page)
    urls = FileUrls(request, container, config)
    items = [{"remotePath": r.remote_path, "url": urls.url(r.dest_key)} for r in rows]
    return _paged("urls", items, total, page[0])


@router.get("/datasets/{dataset_id}/data")
def data_paths(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    page: PageDep,
    q: DataQueryDep,
) -> dict[str, Any]:
    rows, total, _ = _read_data(container, workspace_id, dataset_id, q, page)
    return _paged("data", [{"remotePath": r.remote_path} for r in rows], total, page[0])


@router.get("/datasets/{dataset_id}/labels/statistics")
def label_statistics(
    dataset_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    version: VersionDep,
) -> dict[str, Any]:
    """Annotations per type and category over the dataset's data, as TensorBay counts them."""
    with container.db.uow() as uow:
        s = uow.session
        dataset = _dataset_at(s, workspace_id, dataset_id, version)
        ids = list(s.exec(select(Segment.id).where(Segment.dataset_id == dataset.id)).all())
        rows = repo.label_statistics(s, segment_ids=ids)
    stats: dict[str, Any] = {}
    for label_type, category, count in rows:
        entry = stats.setdefault(label_type, {"quantity": 0, "categories": []})
        entry["quantity"] += count
        if category is not None:
            entry["categories"].append({"name": category, "quantity": count})
    return {"labelStatistics": stats}
