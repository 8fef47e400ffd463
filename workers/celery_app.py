"""What `celery -A workers.celery_app` names: the Celery app the composition root built for
this process (bootstrap; taskqueue/app.py makes it), with the worker's own parts added: its
tasks, the recovery sweep (given its context here), and the pool processes' tuning."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import gc

from celery.signals import worker_init, worker_process_init

from bootstrap import Container, get_container
from importer.context import ImportContext
from metadata.db import Database
from storage_adapters.registry import import_adapters
from workers.recovery import recovery_step


def _sweep_context(container: Container) -> ImportContext:
    """The sweep's collaborators: the container's, with a DB engine that keeps no connection
    open between sweeps (a forked pool child must not inherit one)."""
    url = container.settings.resolved_database_url
    return dataclasses.replace(container.ctx, db=Database(url, pooled=False))


_M_MMAP_THRESHOLD = -3
# Collections of the youngest generation: every 10,000 net allocations instead of 700. A
# worker allocates a few objects per listed key and per ledger row and frees nearly all
# of them by reference counting; at 700, the cyclic collector ran so often (and went
# through the whole heap every 100th time) that it took a fifth of a planner's time.
_GC_THRESHOLDS = (10_000, 10, 10)


@worker_init.connect
def _import_adapters_before_the_fork(**_kwargs: object) -> None:
    """The storage SDKs imported once, in the worker's parent, so that its pool processes
    share them (gc.freeze below keeps them shared) and no job waits for their import."""
    import_adapters()


@worker_process_init.connect
def _collect_less_often(**_kwargs: object) -> None:
    """What the pool process inherited (modules, the app) is kept out of the cyclic
    collector's walks (`gc.freeze`), and its youngest generation is collected less often."""
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


@worker_process_init.connect
def _return_freed_parts_to_the_os(**_kwargs: object) -> None:
    """Streamed copies allocate and free part-sized buffers. glibc raises its mmap threshold
    after the first large free and then keeps such blocks in the heap, so a worker would hold
    several parts' worth of memory it no longer uses. A fixed 1 MiB threshold returns them."""
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
            ctypes.CDLL(name).mallopt(_M_MMAP_THRESHOLD, 1024 * 1024)


_container = get_container()
app = _container.celery
app.conf.include = ["workers.tasks", "workers.telemetry"]
app.steps["worker"].add(recovery_step(lambda: _sweep_context(_container)))
