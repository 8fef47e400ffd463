"""Liveness of the processes that serve no HTTP: heartbeat files that a worker (from its event
loop) and beat (from its scheduling loop) touch every few seconds, read by `bayport health`
(the image's HEALTHCHECK, the chart's livenessProbe); and Celery's control ping of one
worker node, through the broker.

A heartbeat file lives in BAYPORT_DATA_DIR/health/, on the machine (container) that runs the
process, so the check runs there too. A file stops being touched when the loop that touches it
is stuck, not only when the process is gone."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps

from bayport.settings import Settings, get_settings

# How often a worker touches its heartbeat file, and how old `bayport health worker` lets it
# get by default: a few missed touches are a busy machine, not a dead worker.
WORKER_HEARTBEAT_SECONDS = 5.0
WORKER_MAX_AGE = 60.0


def node_name(name: str | None = None) -> str:
    """A worker's node name as Celery makes it from `-n` (default `celery@<host name>`; `%h`,
    `%n`, `%d` expanded), so a check on the same machine finds the same node."""
    from celery.utils.nodenames import default_nodename, host_format

    return str(host_format(default_nodename(name)))


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


def ping_worker(app: Celery, node: str, *, timeout: float = 5.0) -> bool:
    """Whether worker `node` answers Celery's control ping (through the broker) in time."""
    replies = app.control.ping(destination=[node], timeout=timeout)
    return any(node in reply for reply in replies or [])


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Touches the worker's heartbeat file on the worker's timer: with the prefork pool on
    Redis that timer runs in the main process's event loop, so the file goes stale when the
    loop is stuck (or blocked reconnecting to a broker that is down: see deploy/README.md)."""

    label = "heartbeat file"
    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._timer_entry: Any = None

    def start(self, worker: Any) -> None:
        path = worker_heartbeat_path(get_settings(), worker.hostname)
        touch(path)
        self._timer_entry = worker.timer.call_repeatedly(
            WORKER_HEARTBEAT_SECONDS, touch, (path,), priority=10
        )

    def stop(self, worker: Any) -> None:
        # The file is left to go stale, not removed: a warm shutdown finishing its shards is
        # still a live worker.
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None

    shutdown = stop
