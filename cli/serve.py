"""`bayport api|worker|beat|flower`: run one role of the service, as the image and the Helm
chart do (`bayport health <role>` checks one: cli/health.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from bayport.settings import get_settings

console = Console()


def api(
    host: str = "127.0.0.1",
    port: int = 8000,
    migrate_db: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from api.app import create_app
    from bayport.logs import configure_logging
    from bootstrap import get_container
    from metadata.db import migrate as run_migrations

    configure_logging(get_settings())
    if migrate_db:
        run_migrations(get_settings().resolved_database_url)
    # uvicorn's own loggers go to the same handler (log_config=None keeps ours).
    uvicorn.run(create_app(get_container()), host=host, port=port, log_config=None)


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
    from taskqueue.app import TASK_QUEUE
    from workers.celery_app import app as celery_app
    from workers.health import WorkerHeartbeat

    n = processes or get_settings().worker_processes
    celery_app.steps["worker"].add(WorkerHeartbeat)  # for `bayport health worker`
    argv = ["worker", "-Q", TASK_QUEUE, "-E", "--concurrency", str(n), "--loglevel", loglevel]
    celery_app.worker_main(argv + (["-n", name] if name else []))


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

    from bayport.heartbeats import beat_heartbeat_path, touch
    from bayport.logs import configure_logging
    from bayport.settings import SettingsError
    from scheduler.lock import holding_beat_lock

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
