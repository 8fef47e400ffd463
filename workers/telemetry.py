"""Task durations and failures, counted by every worker process into the shared metrics
(telemetry/metrics.py). Connected when the worker imports this module."""

from __future__ import annotations

import time
from typing import Any

from celery.signals import setup_logging, task_postrun, task_prerun

from bayport.logs import configure_logging
from bayport.settings import get_settings
from bootstrap import get_container

_started: dict[str, float] = {}


@task_prerun.connect
def _start(task_id: str | None = None, **_kwargs: Any) -> None:
    if task_id is not None:
        _started[task_id] = time.monotonic()


@task_postrun.connect
def _finish(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_kwargs: Any
) -> None:
    started = _started.pop(task_id or "", None)
    if started is None or task is None:
        return
    get_container().ctx.metrics.task_finished(
        task.name, time.monotonic() - started, failed=state not in ("SUCCESS", "RETRY")
    )


@setup_logging.connect
def _logging(**_kwargs: Any) -> None:
    """The worker logs as every Bayport process does (format, ids, secrets masked)."""
    configure_logging(get_settings())
