"""`bayport`: run the service (standalone, api, worker, beat, migrate), submit and watch imports,
schedule syncs, demo."""

from __future__ import annotations

import typer

from cli import admin, jobs, local, serve
from cli.health import health_app
from cli.keys import keys_app
from cli.schedules import schedule_app

# No locals in tracebacks: they would print the access key or Flower's password.
app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_show_locals=False
)

# In the order `bayport --help` lists them.
app.command()(admin.migrate)
app.command("rotate-secrets")(admin.rotate_secrets)
app.command()(serve.api)
app.command()(serve.worker)
app.command()(serve.beat)
app.command()(serve.flower)
app.command()(local.standalone)
app.command()(jobs.submit)
app.command()(jobs.status)
app.command()(jobs.cancel)
app.command()(local.demo)
app.add_typer(schedule_app, name="schedule")
app.add_typer(keys_app, name="keys")
app.add_typer(health_app, name="health")


if __name__ == "__main__":
    app()
