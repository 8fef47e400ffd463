"""Celery entry points: the app, its thin tasks, and the enqueuer the import logic calls."""
