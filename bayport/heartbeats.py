"""Heartbeat files: the liveness of the processes that serve no HTTP. A worker (from its event
loop, workers/health.py) and beat (from its scheduling loop, scheduler/beat.py) touch theirs every
few seconds; `bayport health` reads them (the image's HEALTHCHECK, the chart's livenessProbe).

A heartbeat file lives in BAYPORT_DATA_DIR/health/, on the machine (container) that runs the
process, so the check runs there too. A file stops being touched when the loop that touches it
is stuck, not only when the process is gone."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from bayport.settings import Settings


def heartbeat_path(settings: Settings, process: str) -> Path:
    return settings.data_dir / "health" / f"{process}.alive"


def worker_heartbeat_path(settings: Settings, node: str) -> Path:
    return heartbeat_path(settings, f"worker-{node}")


def beat_heartbeat_path(settings: Settings) -> Path:
    return heartbeat_path(settings, "beat")


def touch(path: Path) -> None:
    """Mark `path` fresh. Never raises: a full or read-only disk must not stop a worker."""
    with contextlib.suppress(OSError):
        try:
            path.touch()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()


def heartbeat_age(path: Path) -> float | None:
    """Seconds since `path` was last touched; None when it does not exist."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None


def check_heartbeat(path: Path, *, max_age: float, what: str) -> tuple[bool, str]:
    """(alive, what to print) for the heartbeat file of `what`."""
    age = heartbeat_age(path)
    if age is None:
        return False, f"{what}: no heartbeat at {path} (not started, or another node name)"
    if age > max_age:
        return False, f"{what}: last heartbeat {age:.0f} s ago (more than {max_age:g} s)"
    return True, f"{what}: alive (heartbeat {age:.1f} s ago)"
