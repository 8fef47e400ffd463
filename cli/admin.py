"""`bayport migrate|rotate-secrets`: the operator's commands on the metadata DB itself (access
keys: cli/keys.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from bayport.settings import get_settings

console = Console()


def migrate() -> None:
    """Create or upgrade the metadata DB schema."""
    from metadata.db import migrate as run_migrations

    run_migrations(get_settings().resolved_database_url)
    console.print("metadata DB is up to date")


def rotate_secrets(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be re-sealed; change nothing")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows read per batch")] = 100,
) -> None:
    """Re-seal every stored provider credential under the first (newest) key of
    BAYPORT_SECRET_KEY, while the service runs. Safe to repeat or interrupt. Every process
    must already open both keys (README: "Rotating the secret key")."""
    from crypto.secretbox import SecretBox, SecretKeyError
    from metadata.db import Database
    from services.credential_rotation import rotate_credentials

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
