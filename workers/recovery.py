"""The recovery sweep's clock: a worker step that runs importer.recovery.sweep in the worker's
main process every `recovery_interval_seconds`, on a thread of its own.

The main process is the one that survives its pool children (and forks their replacements),
so it sweeps: with a DB engine that keeps no connection open between sweeps (a forked child
must not inherit one) and the worker's own Celery app to send. Every worker sweeps; the
sweep's conditional updates make each resend happen once however many do.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery, bootsteps
from kombu.exceptions import ChannelError

from importer import recovery
from importer.context import ImportContext

log = logging.getLogger("bayport.recovery")


def broker_idle(app: Celery, queue: str) -> bool:
    """Whether the task queue is empty: no message waits in it. Raises when the broker does
    not answer (nothing is known then)."""
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1)
        try:
            _name, waiting, _consumers = conn.default_channel.queue_declare(
                queue=queue, passive=True
            )
        except ChannelError:  # Redis drops an emptied queue's key: no such queue, so empty
            return True
        return int(waiting) == 0


def recovery_step(make_context: Callable[[], ImportContext]) -> type[bootsteps.StartStopStep]:
    """The worker step that sweeps with the context `make_context` gives it, made once when the
    worker starts (workers/celery_app.py: the container's, whose app is the worker's own)."""

    class Sweeper(RecoverySweeper):
        _make_context = staticmethod(make_context)

    return Sweeper


class RecoverySweeper(bootsteps.StartStopStep):
    """Sweeps on a daemon thread from the worker's start to its stop."""

    label = "recovery sweeper"
    _make_context: Callable[[], ImportContext]

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        app: Celery = worker.app
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(app,), name="bayport-recovery", daemon=True
        )
        self._thread.start()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    shutdown = stop

    def _run(self, app: Celery) -> None:
        ctx = self._make_context()
        queue = app.conf.task_default_queue
        interval = ctx.settings.recovery_interval_seconds
        # Workers started together do not sweep in step (each resend happens once anyway).
        while not self._stop.wait(interval * random.uniform(0.8, 1.2)):  # noqa: S311
            try:
                idle = broker_idle(app, queue)
            except Exception as exc:
                log.info("recovery: the broker does not answer (%s); not sweeping", exc)
                continue
            try:
                recovery.sweep(ctx, broker_idle=idle)
            except Exception as exc:  # the DB restarting: sweep again next time
                log.warning("recovery: sweep failed: %s: %s", type(exc).__name__, exc)
