"""/v1/imports/{id}/report: the completion report, one row per object the job handled (as S3
Batch Operations' reports), streamed from the ledger page by page — never built in memory."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from api.deps import ContainerDep, WorkspaceDep
from bootstrap import Container
from metadata.queries import job_reports, jobs

router = APIRouter(prefix="/v1/imports", tags=["imports"])

COLUMNS = (
    "source_key",
    "destination",
    "state",
    "size",
    "checksum",
    "verified_by",
    "attempts",
    "error_code",
    "error_message",
)
_PAGE = 2000


@router.get(
    "/{job_id}/report",
    responses={200: {"content": {"text/csv": {}, "application/json": {}}}},
)
def import_report(
    job_id: str,
    workspace_id: WorkspaceDep,
    container: ContainerDep,
    format: Annotated[Literal["csv", "json"], Query(description="csv or json")] = "csv",
) -> StreamingResponse:
    """Every object this job copied, registered, skipped after a check, relabelled, deleted or
    failed: source key, destination, state, size, checksum, the check that verified the copy
    (md5, crc64 or size), attempts, error code and message.
    Objects a sync found unchanged are not rows (they are counted as `unchanged`)."""
    with container.db.uow() as uow:
        job = jobs.get_job(uow.session, workspace_id=workspace_id, job_id=job_id)
    if job is None:
        raise HTTPException(404, f"import job {job_id!r} does not exist")
    rows = _rows(container, job.id)
    name = f"bayport-report-{job.id}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "csv":
        return StreamingResponse(_csv(rows), media_type="text/csv", headers=headers)
    return StreamingResponse(_json(rows), media_type="application/json", headers=headers)


def _rows(container: Container, job_id: str) -> Iterator[tuple[Any, ...]]:
    """The job's ledger rows in id order, one short transaction per page (keyset paging)."""
    after = 0
    while True:
        with container.db.uow() as uow:
            page = job_reports.report_page(uow.session, job_id=job_id, after_id=after, limit=_PAGE)
        if not page:
            return
        for row in page:
            yield row[1:]
        after = page[-1][0]


# A spreadsheet runs a cell that starts with one of these as a formula (`=HYPERLINK(...)` in
# an object key): such cells are prefixed with a quote, as OWASP advises.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def _cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: keys and messages come from the bucket's owner."""
    if isinstance(value, str) and value.lstrip(" ").startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv(rows: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for n, row in enumerate(rows, start=1):
        writer.writerow([_cell(value) for value in row])
        if n % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json(rows: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    yield "["
    chunk: list[str] = []
    first = True
    for row in rows:
        text = json.dumps(dict(zip(COLUMNS, row, strict=True)), ensure_ascii=False)
        chunk.append(text if first else "," + text)
        first = False
        if len(chunk) >= 500:
            yield "\n".join(chunk)
            chunk = []
    chunk.append("]\n")
    yield "\n".join(chunk)
