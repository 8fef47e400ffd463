"""The draft use cases (TensorBay's versions): open a draft, list, update or close one, and
commit it once the objects registered into it are imported.

A commit waits for that, up to a deadline, on the event loop: `commit_draft` is async, each
look at the draft takes a worker thread for its query only, so waiting commits hold no
thread. The objects themselves are gathered into import jobs by the workers
(importer/drafts.py); a commit only nudges that along. Errors are the service vocabulary
(importer/errors.py) and `DraftImporting`, which each face maps to its own answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from anyio import to_thread
from sqlalchemy.exc import IntegrityError

from importer import drafts
from importer.context import ImportContext
from importer.errors import Conflict, ImportServiceError, Invalid
from metadata.db import Database
from metadata.models import Commit, Draft, DraftStatus, utcnow
from metadata.queries import drafts as drafts_q
from services.lookup import author_of, dataset_by_id, draft_of

MAIN = "main"  # Bayport keeps one branch

# Looks at a waiting draft start this far apart and back off to the longest pause: a long
# wait costs few queries.
FIRST_PAUSE = 0.1
LONGEST_PAUSE = 1.0
# When a client should try a commit again: after the wait ran out, or after objects were
# registered while it was being committed (they are imported soon).
RETRY_AFTER_WAIT = 5
RETRY_AFTER_LATE = 1


class DraftImporting(ImportServiceError):
    """The draft's objects are not all imported yet: commit again after `retry_after` s."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Committed:
    commit_id: str
    failed_objects: int  # objects that failed in the draft's import jobs
    jobs: int  # the import jobs the draft's objects were gathered into


def create_draft(
    *,
    workspace_id: str,
    db: Database,
    dataset_id: str,
    title: str,
    description: str = "",
    branch_name: str = MAIN,
) -> int:
    """The new draft's number, the dataset's next; it starts from the dataset's head."""
    if branch_name != MAIN:
        raise Invalid(f"branch {branch_name!r} does not exist: Bayport keeps {MAIN!r} only")
    for _ in range(3):  # two drafts made at once: the loser takes the next number
        with db.uow() as uow:
            s = uow.session
            dataset = dataset_by_id(s, workspace_id=workspace_id, dataset_id=dataset_id)
            number = drafts_q.last_draft_number(s, dataset_id=dataset.id) + 1
            s.add(
                Draft(
                    dataset_id=dataset.id,
                    number=number,
                    title=title,
                    description=description,
                    branch_name=MAIN,
                    parent_commit_id=dataset.head_commit_id,
                    author=author_of(s, workspace_id),
                )
            )
            try:
                uow.commit()
            except IntegrityError:
                continue
            return number
    raise Conflict("drafts were being made at the same time: try again")


def list_drafts(
    *,
    workspace_id: str,
    db: Database,
    dataset_id: str,
    status: str | None = None,
    branch_name: str | None = None,
    number: int | None = None,
) -> Sequence[Draft]:
    """The dataset's drafts by number; `status` OPEN, COMMITTED, CLOSED or ALL (any case)."""
    wanted = None if status is None or status.upper() == "ALL" else status.upper()
    if wanted is not None and wanted not in DraftStatus.__members__:
        raise Invalid(f"status must be OPEN, COMMITTED, CLOSED or ALL, not {status!r}")
    with db.uow() as uow:
        s = uow.session
        dataset = dataset_by_id(s, workspace_id=workspace_id, dataset_id=dataset_id)
        return drafts_q.list_drafts(
            s, dataset_id=dataset.id, status=wanted, branch_name=branch_name, number=number
        )


def update_draft(
    *,
    workspace_id: str,
    db: Database,
    dataset_id: str,
    number: int,
    title: str | None = None,
    description: str | None = None,
    status: str | None = None,
) -> None:
    """Change an open draft's title or description, or close it (`status` CLOSED: the
    objects it registered that no job took yet are dropped; its running imports go on)."""
    if status is not None and status != DraftStatus.CLOSED.value:
        raise Invalid(f"status can only be set to CLOSED, not {status!r}")
    with db.uow() as uow:
        s = uow.session
        dataset = dataset_by_id(s, workspace_id=workspace_id, dataset_id=dataset_id)
        draft = draft_of(s, dataset, number)
        if title is not None:
            draft.title = title
        if description is not None:
            draft.description = description
        if status is not None:
            draft.status = DraftStatus.CLOSED.value
            drafts_q.drop_waiting_draft_objects(s, dataset_id=dataset.id, draft_number=number)
        draft.updated_at = utcnow()
        s.add(draft)
        uow.commit()


async def commit_draft(
    ctx: ImportContext,
    *,
    workspace_id: str,
    dataset_id: str,
    draft_number: int,
    title: str,
    description: str = "",
    tag: str | None = None,
    wait_seconds: float,
) -> Committed:
    """Commit the open draft once every object it registered is imported, waiting for that
    up to `wait_seconds` (see the module's docstring); DraftImporting when they are not by
    then, or when more were registered while it was being committed."""
    progress = await to_thread.run_sync(_nudge, ctx, workspace_id, dataset_id, draft_number)
    progress = await wait_for_gathering(
        ctx,
        dataset_id=dataset_id,
        draft_number=draft_number,
        current=progress,
        seconds=wait_seconds,
    )
    if not progress.settled:
        raise DraftImporting(
            f"draft {draft_number} is still importing ({progress.waiting} objects "
            f"waiting, {progress.running_jobs} import jobs running): commit again when "
            "they end",
            retry_after=RETRY_AFTER_WAIT,
        )

    def commit() -> Committed:
        return _commit(
            ctx.db, workspace_id, dataset_id, draft_number, title, description, tag, progress
        )

    return await to_thread.run_sync(commit)


async def wait_for_gathering(
    ctx: ImportContext,
    *,
    dataset_id: str,
    draft_number: int,
    current: drafts.DraftProgress,
    seconds: float,
) -> drafts.DraftProgress:
    """`current`, or the draft's progress as looked at next, until it is settled (nothing
    waiting, no job of it running) or `seconds` have passed: the last look either way. Looks
    start FIRST_PAUSE apart, back off to LONGEST_PAUSE, and the last is made at the deadline."""
    deadline = time.monotonic() + seconds
    pause = FIRST_PAUSE
    while not current.settled:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, LONGEST_PAUSE)
        current = await to_thread.run_sync(_progress, ctx, dataset_id, draft_number)
    return current


def _progress(ctx: ImportContext, dataset_id: str, draft_number: int) -> drafts.DraftProgress:
    return drafts.progress(ctx, dataset_id=dataset_id, draft_number=draft_number)


def _nudge(
    ctx: ImportContext, workspace_id: str, dataset_id: str, draft_number: int
) -> drafts.DraftProgress:
    """Check the draft is open, queue a gathering of whatever waits in it, and say where its
    objects are."""
    with ctx.db.uow() as uow:
        dataset = dataset_by_id(uow.session, workspace_id=workspace_id, dataset_id=dataset_id)
        draft_of(uow.session, dataset, draft_number)
    drafts.nudge(ctx, dataset_id=dataset_id, draft_number=draft_number)
    return _progress(ctx, dataset_id, draft_number)


def _commit(
    db: Database,
    workspace_id: str,
    dataset_id: str,
    draft_number: int,
    title: str,
    description: str,
    tag: str | None,
    progress: drafts.DraftProgress,
) -> Committed:
    """The commit row, the draft COMMITTED and the dataset's head moved, in one transaction
    that holds the dataset's and the draft's rows locked."""
    with db.uow() as uow:
        s = uow.session
        dataset = dataset_by_id(s, workspace_id=workspace_id, dataset_id=dataset_id)
        drafts_q.lock_for_commit(s, dataset_id=dataset.id, draft_number=draft_number)
        draft = draft_of(s, dataset, draft_number)
        late = drafts_q.waiting_draft_objects(s, dataset_id=dataset.id, draft_number=draft_number)
        if late:  # registered while the commit waited: they go into this version too
            raise DraftImporting(
                f"draft {draft_number}: {late} objects were registered while it was "
                "being committed: commit again when they are imported",
                retry_after=RETRY_AFTER_LATE,
            )
        commit = Commit(
            dataset_id=dataset.id,
            draft_number=draft.number,
            parent_commit_id=dataset.head_commit_id,
            title=title,
            description=description,
            tag=tag,
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
        return Committed(commit_id=commit.id, failed_objects=progress.failed, jobs=progress.jobs)
