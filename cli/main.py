"""`bayport`: run the service (standalone, api, worker, migrate), submit and watch imports, demo."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from bayport.settings import get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console()

ApiOpt = Annotated[str, typer.Option("--api", envvar="BAYPORT_API_URL", help="API base URL")]
KeyOpt = Annotated[
    str, typer.Option("--key", envvar="BAYPORT_ACCESS_KEY", help="Access key", show_default=False)
]


@app.command()
def migrate() -> None:
    """Create or upgrade the metadata DB schema."""
    from metadata.db import migrate as run_migrations

    run_migrations(get_settings().resolved_database_url)
    console.print("metadata DB is up to date")


@app.command()
def api(
    host: str = "127.0.0.1",
    port: int = 8000,
    migrate_db: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from api.app import create_app
    from bayport.wiring import get_container
    from metadata.db import migrate as run_migrations

    if migrate_db:
        run_migrations(get_settings().resolved_database_url)
    uvicorn.run(create_app(get_container()), host=host, port=port)


@app.command()
def worker(
    processes: Annotated[int | None, typer.Option(help="Worker processes")] = None,
    loglevel: str = "INFO",
) -> None:
    """Run a Celery worker (prefork, task events on) against the configured broker."""
    from workers.celery_app import TASK_QUEUE
    from workers.celery_app import app as celery_app

    n = processes or get_settings().worker_processes
    celery_app.worker_main(
        ["worker", "-Q", TASK_QUEUE, "-E", "--concurrency", str(n), "--loglevel", loglevel]
    )


@app.command()
def standalone(
    port: int = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="Default: BAYPORT_DATA_DIR")] = None,
) -> None:
    """API + worker + embedded broker + SQLite in one command; prints the URL and key."""
    from cli.stack import local_stack

    with local_stack(data_dir=data_dir or get_settings().data_dir, port=port) as stack:
        console.print(f"Bayport is running at [bold]{stack.url}[/] (API docs: {stack.url}/docs)")
        console.print(f"access key: [bold]{stack.access_key}[/]")
        console.print(f"export BAYPORT_API_URL={stack.url} BAYPORT_ACCESS_KEY={stack.access_key}")
        try:
            while all(w.poll() is None for w in stack.workers):
                time.sleep(1)
            console.print("[red]the worker exited[/]")
        except KeyboardInterrupt:
            console.print("stopping")


@app.command()
def submit(
    manifest: Annotated[Path, typer.Argument(help="Import manifest (YAML or JSON)")],
    api_url: ApiOpt = "http://127.0.0.1:8000",
    key: KeyOpt = "",
    watch: bool = False,
) -> None:
    """Submit an import manifest; prints the job id."""
    from cli.client import ApiError, BayportClient

    body = yaml.safe_load(manifest.read_text())
    client = BayportClient(api_url, key)
    try:
        job = client.submit(body)
    except ApiError as exc:
        console.print(f"[red]rejected ({exc.status_code}):[/] {json.dumps(exc.body, indent=2)}")
        raise typer.Exit(2) from exc
    console.print(job["id"])
    if watch:
        raise typer.Exit(watch_job(client, job["id"]))


@app.command()
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


def print_job(job: dict[str, Any]) -> None:
    c = job["counts"]
    console.print(
        f"job {job['id']} [bold]{job['state']}[/]: listed {c['listed']}, copied {c['copied']}, "
        f"registered {c['registered']}, skipped {c['skipped']}, failed {c['failed']}, "
        f"{c['bytes_copied'] / 1e6:.1f} MB copied"
    )
    if job.get("error"):
        console.print(f"[red]{job['error']}[/]")


def watch_job(client: Any, job_id: str, *, interval: float = 0.5) -> int:
    """Draw a progress bar until the job ends; the exit code says how it ended."""
    from cli.client import FINAL_STATES

    columns = (
        TextColumn("[bold]{task.fields[state]}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed}/{task.fields[listed]} objects"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("import", total=None, state="queued", listed="?", rate="")
        while True:
            job = client.job(job_id)
            c = job["counts"]
            done = c["copied"] + c["registered"] + c["skipped"] + c["failed"]
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(
                task,
                completed=done,
                total=c["listed"] if job["listing_done"] else None,
                state=job["state"],
                listed=c["listed"] if job["listing_done"] else f"{c['listed']} listed…",
                rate=f"{done / elapsed:.0f} obj/s, {c['bytes_copied'] / elapsed / 1e6:.1f} MB/s",
            )
            if job["state"] in FINAL_STATES:
                break
            time.sleep(interval)
    print_job(job)
    return 0 if job["state"] == "succeeded" else 1


@app.command()
def demo(
    objects: Annotated[int, typer.Option(help="Images in the sample bucket")] = 200,
    data_dir: Annotated[Path | None, typer.Option(help="Keep the demo's files here")] = None,
) -> None:
    """Create the seed's sample bucket on a local S3 server and import it end to end."""
    from cli.demo import run_demo

    sys.exit(run_demo(objects=objects, data_dir=data_dir, console=console))


if __name__ == "__main__":
    app()
