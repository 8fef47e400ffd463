"""`bayport keys create|list|revoke`: the operator's tool for access keys, on the metadata DB
itself (BAYPORT_DATABASE_URL), like `bayport migrate`; a workspace manages its own keys
through the API (/v1/keys) with an admin key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from bayport.settings import get_settings

if TYPE_CHECKING:  # the DB's modules load when a command runs, not with every `bayport`
    from sqlmodel import Session

    from metadata.db import Database
    from metadata.models import Workspace

keys_app = typer.Typer(
    no_args_is_help=True,
    help="Access keys, on the metadata DB: create (shown once), list, revoke.",
)
console = Console()
err = Console(stderr=True)

WorkspaceOpt = Annotated[
    str | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace id or name. Default: the only workspace (one named 'default' is "
        "made when there is none)",
        show_default=False,
    ),
]


@contextmanager
def _db() -> Iterator[Database]:
    from metadata.db import Database

    db = Database(get_settings().resolved_database_url)
    try:
        yield db
    finally:
        db.dispose()


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]{message}[/]")
    return typer.Exit(2)


def _workspace(session: Session, ref: str | None, *, make: bool) -> Workspace:
    from sqlmodel import select

    from metadata import access_keys
    from metadata.models import Workspace

    if ref is not None:
        found = access_keys.find_workspace(session, ref=ref)
        if found is None:
            raise _fail(f"no workspace {ref!r} (--workspace: an id or a name)")
        return found
    every = session.exec(select(Workspace).limit(2)).all()
    if len(every) == 1:
        return every[0]
    if every:
        raise _fail("there is more than one workspace: say which with --workspace")
    if not make:
        raise _fail("there is no workspace yet")
    workspace = Workspace(name="default")
    session.add(workspace)
    session.flush()
    return workspace


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


@keys_app.command("create")
def create(
    workspace: WorkspaceOpt = None,
    role: Annotated[
        str, typer.Option(help="read (GET/HEAD only), write, or admin (also manages keys)")
    ] = "read",
    expires_in: Annotated[
        str | None,
        typer.Option("--expires-in", help="e.g. 90m, 12h, 30d, 8w. Default: never expires"),
    ] = None,
    name: Annotated[str, typer.Option(help="What the key is for")] = "",
) -> None:
    """Make a key and print it, this once (only its SHA-256 is stored)."""
    from metadata import access_keys
    from metadata.access_keys import AccessKeyError
    from metadata.models import utcnow

    try:
        access_keys.check_role(role)
        expires_at = utcnow() + access_keys.parse_duration(expires_in) if expires_in else None
        with _db() as db, db.uow() as uow:
            ws = _workspace(uow.session, workspace, make=True)
            row, key = access_keys.create_key(
                uow.session, workspace_id=ws.id, role=role, name=name, expires_at=expires_at
            )
            key_id, ws_name = row.id, ws.name
            uow.commit()
    except AccessKeyError as exc:
        raise _fail(f"--{(exc.field or 'value').replace('_', '-')}: {exc.message}") from None
    err.print(
        f"key {key_id} ({role}) of workspace {ws_name!r}, expires {_when(expires_at)}; "
        "it is shown once:"
    )
    print(key)  # alone on stdout, for `KEY=$(bayport keys create ...)`


@keys_app.command("list")
def list_(workspace: WorkspaceOpt = None) -> None:
    """The keys (never the keys themselves): id, name, role, hint, created, expires, revoked,
    last used."""
    from rich.table import Table

    from metadata import access_keys

    with _db() as db, db.uow() as uow:
        ws_id = _workspace(uow.session, workspace, make=False).id if workspace else None
        rows = access_keys.list_keys(uow.session, workspace_id=ws_id)
        table = Table(
            "id", "workspace", "name", "role", "hint", "created", "expires", "revoked", "last used"
        )
        for r in rows:
            table.add_row(
                r.id,
                r.workspace_id,
                r.name,
                r.role,
                r.hint,
                _when(r.created_at),
                _when(r.expires_at),
                _when(r.revoked_at),
                _when(r.last_used_at),
            )
    Console(width=240).print(table)  # one line per key, however narrow the terminal


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (see `keys list`)")]) -> None:
    """Revoke a key: API processes refuse it within BAYPORT_API_KEY_CACHE_SECONDS."""
    from metadata import access_keys

    with _db() as db, db.uow() as uow:
        row = access_keys.revoke_key(uow.session, key_id=key_id)
        if row is None:
            raise _fail(f"no access key {key_id!r}")
        when = row.revoked_at
        uow.commit()
    console.print(f"revoked {key_id} at {_when(when)}")
