"""`bayport standalone|demo`: the whole service on this machine, and a demo import into it."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bayport.settings import get_settings

console = Console()


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


def demo(
    objects: Annotated[int, typer.Option(help="Images in the sample bucket")] = 200,
    data_dir: Annotated[Path | None, typer.Option(help="Keep the demo's files here")] = None,
) -> None:
    """Create the seed's sample bucket on a local S3 server and import it end to end."""
    from cli.demo import run_demo

    sys.exit(run_demo(objects=objects, data_dir=data_dir, console=console))
