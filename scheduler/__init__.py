"""Nightly incremental syncs driven by Celery beat (the scheduled-syncs issue builds it)."""
