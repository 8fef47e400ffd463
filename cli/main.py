"""`bayport`: run the service (standalone, api, worker, beat, migrate), submit and watch imports,
schedule syncs, demo."""

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
from cli.keys import keys_app

# No locals in tracebacks: they would print the access key or Flower's password.
app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_show_locals=False
)
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


@app.command("rotate-secrets")
def rotate_secrets(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be re-sealed; change nothing")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows read per batch")] = 100,
) -> None:
    """Re-seal every stored provider credential under the first (newest) key of
    BAYPORT_SECRET_KEY, while the service runs. Safe to repeat or interrupt. Every process
    must already open both keys (README: "Rotating the secret key")."""
    from bayport.rotation import rotate_credentials
    from bayport.secretbox import SecretBox, SecretKeyError
    from metadata.db import Database

    settings = get_settings()
    if settings.secret_key is None:  # (else a development key would be made up here)
        console.print("[red]set BAYPORT_SECRET_KEY to the new key, then the old ones: new,old[/]")
        raise typer.Exit(2)
    try:
        box = SecretBox(settings.fernet_keys())
    except SecretKeyError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    db = Database(settings.resolved_database_url)
    try:
        report = rotate_credentials(db, box, batch_size=batch_size, dry_run=dry_run)
    finally:
        db.dispose()
    verb = "would re-seal" if dry_run else "re-sealed"
    console.print(
        f"{verb} {report.resealed} of {report.examined} storage configs; "
        f"{report.current} already under the newest key; "
        f"{report.remaining} remain under old keys"
    )
    if report.unreadable:
        console.print(
            f"[red]{len(report.unreadable)} cannot be opened by any key in "
            f"BAYPORT_SECRET_KEY[/] (workspace/name): {', '.join(report.unreadable)}"
        )
        raise typer.Exit(1)
    if report.busy:
        console.print("[yellow]some configs changed while re-sealing: run it again[/]")
        raise typer.Exit(1)


@app.command()
def api(
    host: str = "127.0.0.1",
    port: int = 8000,
    migrate_db: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from api.app import create_app
    from bayport.logs import configure_logging
    from bayport.wiring import get_container
    from metadata.db import migrate as run_migrations

    configure_logging(get_settings())
    if migrate_db:
        run_migrations(get_settings().resolved_database_url)
    # uvicorn's own loggers go to the same handler (log_config=None keeps ours).
    uvicorn.run(create_app(get_container()), host=host, port=port, log_config=None)


@app.command()
def worker(
    processes: Annotated[int | None, typer.Option(help="Worker processes")] = None,
    loglevel: str = "INFO",
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            help="Node name (Celery's -n; %h is the host name). Default: celery@<host name>. "
            "Two workers on one machine need two names.",
        ),
    ] = None,
) -> None:
    """Run a Celery worker (prefork, task events on) against the configured broker. SIGTERM
    is a warm shutdown: running shards finish, the rest stay queued."""
    from workers.celery_app import TASK_QUEUE
    from workers.celery_app import app as celery_app
    from workers.health import WorkerHeartbeat

    n = processes or get_settings().worker_processes
    celery_app.steps["worker"].add(WorkerHeartbeat)  # for `bayport health worker`
    argv = ["worker", "-Q", TASK_QUEUE, "-E", "--concurrency", str(n), "--loglevel", loglevel]
    celery_app.worker_main(argv + (["-n", name] if name else []))


@app.command()
def beat(
    loglevel: str = "INFO",
    lock: Annotated[
        bool,
        typer.Option(
            "--lock/--no-lock",
            help="Schedule only while holding a lock in Redis: a second beat with --lock "
            "waits (a standby) until the first stops",
        ),
    ] = False,
    lock_ttl: Annotated[
        float, typer.Option(min=3, help="Seconds the lock outlives a holder that stopped renewing")
    ] = 60.0,
) -> None:
    """Run Celery beat on the schedules in the metadata DB. Any number may run: each
    occurrence is claimed in the DB once, and only the beat that claims it starts the run
    (with --lock, only one of them schedules at all)."""
    from workers.celery_app import app as celery_app

    def run_beat() -> None:
        celery_app.Beat(scheduler="scheduler.beat:DatabaseScheduler", loglevel=loglevel).run()

    if not lock:
        run_beat()
        return
    import os
    import signal

    from bayport.logs import configure_logging
    from bayport.settings import SettingsError
    from scheduler.lock import holding_beat_lock
    from workers.health import beat_heartbeat_path, touch

    settings = get_settings()
    configure_logging(settings)
    heartbeat = beat_heartbeat_path(settings)
    try:
        # Lost the lock: SIGTERM ends beat as a shutdown would (it syncs and exits).
        with holding_beat_lock(
            settings,
            ttl=lock_ttl,
            on_lost=lambda: os.kill(os.getpid(), signal.SIGTERM),
            while_waiting=lambda: touch(heartbeat),
        ):
            run_beat()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc


@app.command()
def flower(
    host: Annotated[str, typer.Option(help="Address to serve on")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Default: BAYPORT_FLOWER_PORT (5555)")] = None,
    unauthenticated: Annotated[
        bool,
        typer.Option(
            "--unauthenticated",
            help="Serve without a login, and the API to anyone: 127.0.0.1 only, for local use",
        ),
    ] = False,
) -> None:
    """Serve Flower, the Celery dashboard, on the configured broker: every plan and shard
    task of every job, live. Behind BAYPORT_FLOWER_BASIC_AUTH ("user:password")."""
    import os

    from bayport.settings import SettingsError
    from workers.celery_app import app as celery_app

    settings = get_settings()
    try:
        credentials = settings.flower_credentials()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    argv = ["flower", f"--address={host}", f"--port={port or settings.flower_port}"]
    if unauthenticated:
        if host not in ("127.0.0.1", "localhost"):
            console.print("[red]--unauthenticated serves on 127.0.0.1 only[/]")
            raise typer.Exit(2)
        # Flower reads this one from the environment itself; without it, its HTTP API
        # answers 401 to everyone when no login is configured.
        os.environ["FLOWER_UNAUTHENTICATED_API"] = "true"
    elif credentials is None:
        console.print(
            "[red]refusing to serve Flower without a login:[/] set "
            "BAYPORT_FLOWER_BASIC_AUTH=user:password (or pass --unauthenticated, for "
            "127.0.0.1 only)"
        )
        raise typer.Exit(2)
    else:
        # In this process's argv list only: the OS command line stays without it.
        argv.append(f"--basic-auth={credentials}")
    celery_app.start(argv)


@app.command()
def standalone(
    port: int = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="Default: BAYPORT_DATA_DIR")] = None,
    flower_port: Annotated[
        int | None, typer.Option(help="Flower's port. Default: BAYPORT_FLOWER_PORT (5555)")
    ] = None,
    with_flower: Annotated[
        bool, typer.Option("--flower/--no-flower", help="Serve the Flower dashboard too")
    ] = True,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls/--no-tls",
            help="Serve the API over HTTPS, with a certificate from a local CA made in the "
            "data folder (for clients that only speak https, such as the TensorBay SDK)",
        ),
    ] = False,
) -> None:
    """API + worker + embedded broker + SQLite (+ Flower) in one command; prints the URL and
    key (and Flower's login, when it generated one)."""
    from cli.stack import FLOWER_USER, local_stack

    settings = get_settings()
    data_dir = data_dir or settings.data_dir
    flower_at = (flower_port or settings.flower_port) if with_flower else None
    with local_stack(
        data_dir=data_dir,
        port=port,
        flower_port=flower_at,
        flower_log=data_dir / "flower.log",
        tls=tls,
    ) as stack:
        console.print(f"Bayport is running at [bold]{stack.url}[/] (API docs: {stack.url}/docs)")
        console.print(f"access key: [bold]{stack.access_key}[/]")
        if stack.flower_url and settings.flower_basic_auth is None:
            secret = stack.settings.flower_basic_auth
            password = secret.get_secret_value().partition(":")[2] if secret else ""
            console.print(
                f"Flower (task dashboard): [bold]{stack.flower_url}[/] "
                f"user [bold]{FLOWER_USER}[/] password [bold]{password}[/]"
            )
        elif stack.flower_url:
            console.print(
                f"Flower (task dashboard): [bold]{stack.flower_url}[/] "
                "(log in as BAYPORT_FLOWER_BASIC_AUTH says)"
            )
        console.print(f"export BAYPORT_API_URL={stack.url} BAYPORT_ACCESS_KEY={stack.access_key}")
        if stack.ca_file is not None:
            console.print(
                f"HTTPS, by a CA made for this folder: export REQUESTS_CA_BUNDLE={stack.ca_file} "
                f"SSL_CERT_FILE={stack.ca_file}"
            )
        try:
            while all(w.poll() is None for w in stack.workers):
                if stack.flower is not None and stack.flower.poll() is not None:
                    stack.flower = None  # said once; the rest of the stack runs on
                    console.print(
                        f"[yellow]Flower exited[/] (port {flower_at} taken? see "
                        f"{data_dir / 'flower.log'}; --flower-port picks another port, "
                        "--no-flower skips it)"
                    )
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


@app.command()
def cancel(job_id: str, api_url: ApiOpt = "http://127.0.0.1:8000", key: KeyOpt = "") -> None:
    """Cancel a job: no new copy starts; it ends `cancelled` once running copies end."""
    from cli.client import BayportClient

    print_job(_call(BayportClient(api_url, key).cancel, job_id))


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


@app.command()
def demo(
    objects: Annotated[int, typer.Option(help="Images in the sample bucket")] = 200,
    data_dir: Annotated[Path | None, typer.Option(help="Keep the demo's files here")] = None,
) -> None:
    """Create the seed's sample bucket on a local S3 server and import it end to end."""
    from cli.demo import run_demo

    sys.exit(run_demo(objects=objects, data_dir=data_dir, console=console))


schedule_app = typer.Typer(no_args_is_help=True, help="Scheduled syncs: a manifest on a cron.")
app.add_typer(schedule_app, name="schedule")
app.add_typer(keys_app, name="keys")


def _client(api_url: str, key: str) -> Any:
    from cli.client import BayportClient

    return BayportClient(api_url, key)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the API; a rejection prints the API's answer and exits 2."""
    from cli.client import ApiError

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        console.print(f"[red]rejected ({exc.status_code}):[/] {json.dumps(exc.body, indent=2)}")
        raise typer.Exit(2) from exc


def _print_schedule(s: dict[str, Any]) -> None:
    state = "enabled" if s["enabled"] else "[yellow]disabled[/]"
    console.print(
        f"{s['name']}: [bold]{s['cron']}[/] ({s['timezone']}), {state}, "
        f"next {s['next_occurrence'] or '-'}, last {s['last_occurrence'] or '-'}"
    )


@schedule_app.command("add")
def schedule_add(
    name: str,
    manifest: Annotated[Path, typer.Option(help="Import manifest (YAML or JSON)")],
    cron: Annotated[
        str, typer.Option(help="5 fields (m h dom mon dow), or 6 with the seconds first")
    ],
    timezone: Annotated[str, typer.Option(help="IANA time zone of the cron")] = "UTC",
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled")] = False,
    api_url: ApiOpt = "http://127.0.0.1:8000",
    key: KeyOpt = "",
) -> None:
    """Create a schedule: the manifest is imported at every occurrence of the cron."""
    body = yaml.safe_load(manifest.read_text())
    client = _client(api_url, key)
    created = _call(
        client.create_schedule, name, body, cron, timezone=timezone, enabled=not disabled
    )
    _print_schedule(created)


@schedule_app.command("list")
def schedule_list(api_url: ApiOpt = "http://127.0.0.1:8000", key: KeyOpt = "") -> None:
    """List the workspace's schedules."""
    for s in _call(_client(api_url, key).schedules):
        _print_schedule(s)


@schedule_app.command("run")
def schedule_run(name: str, api_url: ApiOpt = "http://127.0.0.1:8000", key: KeyOpt = "") -> None:
    """Run a schedule now (even a disabled one); prints the run id."""
    run = _call(_client(api_url, key).run_schedule, name)
    console.print(run["id"])


@schedule_app.command("enable")
def schedule_enable(name: str, api_url: ApiOpt = "http://127.0.0.1:8000", key: KeyOpt = "") -> None:
    """Enable a schedule: it fires from its next occurrence on (missed ones are not run)."""
    _print_schedule(_call(_client(api_url, key).update_schedule, name, enabled=True))


@schedule_app.command("disable")
def schedule_disable(
    name: str, api_url: ApiOpt = "http://127.0.0.1:8000", key: KeyOpt = ""
) -> None:
    """Disable a schedule (a job it started keeps running)."""
    _print_schedule(_call(_client(api_url, key).update_schedule, name, enabled=False))


@schedule_app.command("delete")
def schedule_delete(name: str, api_url: ApiOpt = "http://127.0.0.1:8000", key: KeyOpt = "") -> None:
    """Delete a schedule and its run history (the jobs it started stay)."""
    _call(_client(api_url, key).delete_schedule, name)
    console.print(f"deleted {name}")


@schedule_app.command("runs")
def schedule_runs(
    name: str,
    limit: Annotated[int, typer.Option(help="How many of the latest runs")] = 20,
    api_url: ApiOpt = "http://127.0.0.1:8000",
    key: KeyOpt = "",
) -> None:
    """The schedule's latest runs, newest first: occurrence, trigger, status, job and counts."""
    from rich.table import Table

    table = Table(
        "occurrence", "trigger", "status", "job", "state", "copied", "skipped", "failed", "reason"
    )
    for r in _call(_client(api_url, key).schedule_runs, name, limit=limit):
        table.add_row(
            r["occurrence"],
            r["trigger"],
            r["status"],
            r["job_id"] or "",
            r["job_state"] or "",
            *(str(r[k]) if r[k] is not None else "" for k in ("copied", "skipped", "failed")),
            r["reason"] or r["review_reason"] or "",
        )
    console.print(table)


health_app = typer.Typer(
    no_args_is_help=True,
    help="Health checks, one per role (the image's HEALTHCHECK runs `bayport health "
    "$BAYPORT_ROLE`; the Helm chart's probes these or HTTP): exit 0 healthy, 1 not.",
)
app.add_typer(health_app, name="health")


def _health_verdict(ok: bool, said: str) -> None:
    console.print(said, highlight=False)
    raise typer.Exit(0 if ok else 1)


def _http_ok(url: str) -> tuple[bool, str]:
    import httpx

    try:
        answer = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return False, f"{url}: {type(exc).__name__}"
    return answer.status_code == 200, f"{url}: {answer.status_code} {answer.text[:200]}"


@health_app.command("api")
def health_api(
    port: Annotated[int, typer.Option(help="The API's port on this machine")] = 8000,
    ready: Annotated[
        bool, typer.Option("--ready", help="/readyz (DB and broker) instead of /healthz")
    ] = False,
) -> None:
    """The API on this machine answers /healthz (or, --ready, /readyz)."""
    _health_verdict(*_http_ok(f"http://127.0.0.1:{port}/{'readyz' if ready else 'healthz'}"))


@health_app.command("worker")
def health_worker(
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="The worker's node name, as it was started")
    ] = None,
    max_age: Annotated[float, typer.Option(help="Oldest heartbeat still alive (s)")] = 60.0,
    ping: Annotated[
        bool,
        typer.Option("--ping", help="Also ask the node through the broker (Celery control ping)"),
    ] = False,
) -> None:
    """This machine's worker touched its heartbeat file lately (its event loop turns); with
    --ping it also answers a control ping through the broker."""
    from workers.health import check_heartbeat, node_name, ping_worker, worker_heartbeat_path

    node = node_name(name)
    ok, said = check_heartbeat(
        worker_heartbeat_path(get_settings(), node), max_age=max_age, what=f"worker {node}"
    )
    if ok and ping:
        from workers.celery_app import app as celery_app

        try:
            ok = ping_worker(celery_app, node)
        except Exception as exc:
            ok, said = False, f"worker {node}: ping failed ({type(exc).__name__})"
        else:
            said += "; answers ping" if ok else "; does not answer a ping"
    _health_verdict(ok, said)


@health_app.command("beat")
def health_beat(
    max_age: Annotated[
        float | None,
        typer.Option(help="Oldest heartbeat still alive (s). Default: 60, or 3 refreshes"),
    ] = None,
) -> None:
    """This machine's beat turned its scheduling loop lately (or, waiting for the lock as a
    standby, is still waiting)."""
    from workers.health import beat_heartbeat_path, check_heartbeat

    settings = get_settings()
    limit = max_age if max_age is not None else max(60.0, 3 * settings.beat_refresh_seconds)
    _health_verdict(*check_heartbeat(beat_heartbeat_path(settings), max_age=limit, what="beat"))


@health_app.command("flower")
def health_flower(
    port: Annotated[int | None, typer.Option(help="Default: BAYPORT_FLOWER_PORT (5555)")] = None,
) -> None:
    """Flower on this machine answers /healthcheck (no login needed)."""
    _health_verdict(*_http_ok(f"http://127.0.0.1:{port or get_settings().flower_port}/healthcheck"))


@health_app.command("migrate")
def health_migrate() -> None:
    """The one-shot migration has no health to check: always healthy while it runs."""
    _health_verdict(True, "migrate: a one-shot job")


if __name__ == "__main__":
    app()
