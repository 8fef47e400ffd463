"""A worker's liveness: the step that touches its heartbeat file from the worker's event loop
(the files themselves: bayport/heartbeats.py), its node name, and Celery's control ping of one
worker node, through the broker."""

from __future__ import annotations

from typing import Any

from celery import Celery, bootsteps

from bayport.heartbeats import touch, worker_heartbeat_path
from bayport.settings import get_settings

# How often a worker touches its heartbeat file, and how old `bayport health worker` lets it
# get by default: a few missed touches are a busy machine, not a dead worker.
WORKER_HEARTBEAT_SECONDS = 5.0
WORKER_MAX_AGE = 60.0


def node_name(name: str | None = None) -> str:
    """A worker's node name as Celery makes it from `-n` (default `celery@<host name>`; `%h`,
    `%n`, `%d` expanded), so a check on the same machine finds the same node."""
    from celery.utils.nodenames import default_nodename, host_format

    return str(host_format(default_nodename(name)))


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
