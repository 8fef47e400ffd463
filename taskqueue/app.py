"""The task queue's Celery app, as the composition root builds it once per process (bootstrap):
Redis broker, late acks, task events on (so Flower shows every task). Senders (the API, the CLI,
the import logic through taskqueue/enqueue.py) send tasks by name and need no task code; the
worker's own parts (its tasks, recovery sweep, heartbeat) are added by workers/celery_app.py."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.amqp import AMQP

from bayport.settings import Settings

TASK_QUEUE = "bayport"


class _ShadowedSentEvents(AMQP):  # type: ignore[misc]  # celery is untyped
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
    return app
