"""The Celery app: Redis broker, late acks, task events on (so Flower shows every task)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from celery.signals import worker_process_init

from bayport.settings import Settings, get_settings

TASK_QUEUE = "bayport"


class _ShadowedSentEvents(AMQP):
    """Names the `task-sent` event as the worker's events are named: by the message's display
    name (`shadow`, e.g. `bayport.copy_shard job=<id> shard=<n>`). Celery names it by the
    task name, and the sender's event may reach Flower after the worker's (they travel apart):
    Flower would then rename a finished task back to the bare task name."""

    def as_task_v2(self, task_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(task_id, name, *args, **kwargs)
        shadow = message.headers.get("shadow")  # (send_task passes it by position)
        if shadow and message.sent_event is not None:
            message.sent_event["name"] = shadow
        return message


def make_celery(settings: Settings) -> Celery:
    app = Celery(
        "bayport",
        broker=settings.broker_url,
        include=["workers.tasks", "workers.telemetry"],
        amqp=_ShadowedSentEvents,
    )
    app.conf.update(
        task_default_queue=TASK_QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A task is acknowledged when it ends, and requeued when its worker dies mid-way:
        # every task is idempotent, so running one twice is safe, losing one is not.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        broker_connection_retry_on_startup=True,
        # A message held by a worker that died whole comes back after this long; the
        # recovery sweep sends its work again long before (workers/recovery.py).
        broker_transport_options={"visibility_timeout": 2 * 3600},
        worker_hijack_root_logger=False,
    )
    from workers.recovery import RecoverySweeper

    app.steps["worker"].add(RecoverySweeper)
    return app


_M_MMAP_THRESHOLD = -3
# Collections of the youngest generation: every 10,000 net allocations instead of 700. A
# worker allocates a few objects per listed key and per ledger row and frees nearly all
# of them by reference counting; at 700, the cyclic collector ran so often (and went
# through the whole heap every 100th time) that it took a fifth of a planner's time.
_GC_THRESHOLDS = (10_000, 10, 10)


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


app = make_celery(get_settings())
