"""The task queue: the Celery app (app.py) and the sender of tasks by name (enqueue.py)."""
