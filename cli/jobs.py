"""`bayport submit|status|cancel`: submit an import manifest and follow its job (with a
progress bar), through the API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from cli.remote import ApiOpt, KeyOpt, call_api

console = Console()


def submit(
    manifest: Annotated[Path, typer.Argument(help="Import manifest (YAML or JSON)")],
    api_url: ApiOpt = "http://127.0.0.1:8000",
    key: KeyOpt = "",
    watch: bool = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="Sent as Idempotency-Key: submitting again with the same key (this command "
            "run twice, say) gives the same job. Default: a new key, kept across resends."
        ),
    ] = None,
) -> None:
    """Submit an import manifest; prints the job id."""
    from cli.client import ApiError, BayportClient

    body = yaml.safe_load(manifest.read_text())
    client = BayportClient(api_url, key)
    try:
        job = client.submit(body, idempotency_key=idempotency_key)
    except ApiError as exc:
        console.print(f"[red]rejected ({exc.status_code}):[/] {json.dumps(exc.body, indent=2)}")
        raise typer.Exit(2) from exc
    console.print(job["id"])
    if watch:
        raise typer.Exit(watch_job(client, job["id"]))


def status(
    job_id: str,
    api_url: ApiOpt = "http://127.0.0.1:8000",
    key: KeyOpt = "",
    watch: Annotated[bool, typer.Option("--watch", help="Follow with a progress bar")] = False,
) -> None:
    """Show a job's state and counts (with --watch, until it ends)."""
    from cli.client import BayportClient

    client = BayportClient(api_url, key)
    if watch:
        raise typer.Exit(watch_job(client, job_id))
    print_job(client.job(job_id))


def cancel(job_id: str, api_url: ApiOpt = "http://127.0.0.1:8000", key: KeyOpt = "") -> None:
    """Cancel a job: no new copy starts; it ends `cancelled` once running copies end."""
    from cli.client import BayportClient

    print_job(call_api(BayportClient(api_url, key).cancel, job_id))


def print_job(job: dict[str, Any]) -> None:
    c = job["counts"]
    console.print(
        f"job {job['id']} [bold]{job['state']}[/]: listed {c['listed']}, copied {c['copied']}, "
        f"registered {c['registered']}, skipped {c['skipped']}, failed {c['failed']}, "
        f"{c['bytes_copied'] / 1e6:.1f} MB copied"
    )
    if job.get("progress"):
        objects, rate, eta = _progress_text(job)
        console.print(f"  {objects}, {rate}" + (f", {eta}" if eta else ""))
    if job.get("error"):
        console.print(f"[red]{job['error']}[/]")


def _progress_text(job: dict[str, Any]) -> tuple[str, str, str]:
    """(objects done of the total or "listing… N so far", rate, ETA) of a job's progress."""
    from cli.client import FINAL_STATES

    p = job["progress"]
    if p["objects_total"] is None:
        objects = f"listing… {p['objects_listed']:,} so far"
    else:
        objects = f"{p['objects_done']:,}/{p['objects_total']:,} objects"
    final = job["state"] in FINAL_STATES
    rate = f"{p['objects_per_second']:.1f} obj/s · {p['mb_per_second']:.2f} MB/s"
    if final:
        return objects, f"average {rate}", ""
    s = p["eta_seconds"]
    if s is None:
        return objects, rate, "eta ?"
    s = round(s)
    clock = (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )
    return objects, rate, f"eta {clock}"


def watch_job(client: Any, job_id: str, *, interval: float = 0.5) -> int:
    """Draw a progress bar until the job ends — objects done of the total ("listing… N so
    far" until listing ends), rate, ETA and failures, from the API's `progress` — and return
    an exit code that says how it ended."""
    from cli.client import FINAL_STATES

    columns = (
        TextColumn("[bold]{task.fields[state]}"),
        BarColumn(bar_width=32, complete_style="green", finished_style="green"),
        TaskProgressColumn(),
        TextColumn("{task.fields[objects]}"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[eta]}"),
        TextColumn("[red]{task.fields[failed]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(
            "import", total=None, state="queued", objects="", rate="", eta="", failed=""
        )
        while True:
            job = client.job(job_id)
            p = job.get("progress")
            if p is None:  # an API from before progress: the counts only
                c = job["counts"]
                done, total, failed = c["copied"] + c["skipped"], None, c["failed"]
                objects, rate, eta = f"{done:,} done", "", ""
            else:
                done, total, failed = p["objects_done"], p["objects_total"], p["failed"]
                objects, rate, eta = _progress_text(job)
            bar.update(
                task,
                completed=done,
                total=total,
                state=job["state"],
                objects=objects,
                rate=rate,
                eta=eta,
                failed=f"{failed:,} failed" if failed else "",
            )
            if job["state"] in FINAL_STATES:
                break
            time.sleep(interval)
    print_job(job)
    return 0 if job["state"] == "succeeded" else 1
