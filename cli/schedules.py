"""`bayport schedule add|list|run|enable|disable|delete|runs`: scheduled syncs (a manifest on
a cron), through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from cli.remote import ApiOpt, KeyOpt, call_api

console = Console()


schedule_app = typer.Typer(no_args_is_help=True, help="Scheduled syncs: a manifest on a cron.")


def _client(api_url: str, key: str) -> Any:
    from cli.client import BayportClient

    return BayportClient(api_url, key)


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
    created = call_api(
        client.create_schedule, name, body, cron, timezone=timezone, enabled=not disabled
    )
    _print_schedule(created)


@schedule_app.command("list")
def schedule_list(api_url: ApiOpt = "http://127.0.0.1:8000", key: KeyOpt = "") -> None:
    """List the workspace's schedules."""
    for s in call_api(_client(api_url, key).schedules):
        _print_schedule(s)


@schedule_app.command("run")
def schedule_run(name: str, api_url: ApiOpt = "http://127.0.0.1:8000", key: KeyOpt = "") -> None:
    """Run a schedule now (even a disabled one); prints the run id."""
    run = call_api(_client(api_url, key).run_schedule, name)
    console.print(run["id"])


@schedule_app.command("enable")
def schedule_enable(name: str, api_url: ApiOpt = "http://127.0.0.1:8000", key: KeyOpt = "") -> None:
    """Enable a schedule: it fires from its next occurrence on (missed ones are not run)."""
    _print_schedule(call_api(_client(api_url, key).update_schedule, name, enabled=True))


@schedule_app.command("disable")
def schedule_disable(
    name: str, api_url: ApiOpt = "http://127.0.0.1:8000", key: KeyOpt = ""
) -> None:
    """Disable a schedule (a job it started keeps running)."""
    _print_schedule(call_api(_client(api_url, key).update_schedule, name, enabled=False))


@schedule_app.command("delete")
def schedule_delete(name: str, api_url: ApiOpt = "http://127.0.0.1:8000", key: KeyOpt = "") -> None:
    """Delete a schedule and its run history (the jobs it started stay)."""
    call_api(_client(api_url, key).delete_schedule, name)
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
    for r in call_api(_client(api_url, key).schedule_runs, name, limit=limit):
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
