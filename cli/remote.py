"""What the commands that call a running API share: its --api and --key options, and how
they tell a rejection."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()


ApiOpt = Annotated[str, typer.Option("--api", envvar="BAYPORT_API_URL", help="API base URL")]
KeyOpt = Annotated[
    str, typer.Option("--key", envvar="BAYPORT_ACCESS_KEY", help="Access key", show_default=False)
]


def call_api(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the API; a rejection prints the API's answer and exits 2."""
    from cli.client import ApiError

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        console.print(f"[red]rejected ({exc.status_code}):[/] {json.dumps(exc.body, indent=2)}")
        raise typer.Exit(2) from exc
