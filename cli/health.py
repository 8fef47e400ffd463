"""`bayport health api|worker|beat|flower|migrate`: one health check per role, for the image's
HEALTHCHECK and the Helm chart's probes."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from bayport.settings import get_settings

console = Console()


health_app = typer.Typer(
    no_args_is_help=True,
    help="Health checks, one per role (the image's HEALTHCHECK runs `bayport health "
    "$BAYPORT_ROLE`; the Helm chart's probes these or HTTP): exit 0 healthy, 1 not.",
)


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
    from bayport.heartbeats import check_heartbeat, worker_heartbeat_path
    from workers.health import node_name, ping_worker

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
    from bayport.heartbeats import beat_heartbeat_path, check_heartbeat

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
