"""The job page, /jobs/{id}: an import's state, progress bar, throughput chart, failures and
tasks (from /v1/imports/{id}/tasks, the job's own: never a link to Flower, which shows every
workspace's tasks and is for operators), for a browser; and the static files it loads (from
this package: no CDN).

The page holds no data, so serving it needs no key. Its script reads the job from the API
like any client, with the access key in an Authorization header — also for the progress
events, read with fetch() since EventSource cannot send headers. The key reaches the script
in the URL's fragment (/jobs/{id}#key=bp_…), which browsers never send to a server (so it is
in no access log and no Referer), or through a form on the page; the script keeps it in the
tab's sessionStorage and takes it out of the address bar. The Content-Security-Policy lets
the page load nothing and talk to nothing but this API.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

STATIC = Path(__file__).parent / "static"
_PAGE = (STATIC / "job.html").read_text(encoding="utf-8")
_ASSETS = {"job.js": "text/javascript", "job.css": "text/css"}
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str) -> HTMLResponse:
    if not _JOB_ID.fullmatch(job_id):
        raise HTTPException(404, "not a job id")
    return HTMLResponse(_PAGE, headers=_HEADERS)


@router.get("/jobs/static/{name}")
def job_page_asset(name: str) -> FileResponse:
    if name not in _ASSETS:  # a fixed list: no path from the request reaches the disk
        raise HTTPException(404, "no such file")
    return FileResponse(
        STATIC / name,
        media_type=_ASSETS[name],
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )
