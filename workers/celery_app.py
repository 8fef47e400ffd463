"""The Celery app: Redis broker, late acks, task events on (so Flower shows every task)."""

from __future__ import annotations

from celery import Celery

from bayport.settings import Settings, get_settings

TASK_QUEUE = "bayport"


def make_celery(settings: Settings) -> Celery:
    app = Celery("bayport", broker=settings.broker_url, include=["workers.tasks"])
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
        broker_transport_options={"visibility_timeout": 2 * 3600},
        worker_hijack_root_logger=False,
    )
    return app


app = make_celery(get_settings())
