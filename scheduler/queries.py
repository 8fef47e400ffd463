"""The schedule queries' old import path: they live in metadata.queries.schedules now (import
them from there); this module goes once nothing imports it."""

from __future__ import annotations

from metadata.queries.schedules import (
    count_schedules,
    delete_schedule,
    enabled_schedules,
    get_schedule,
    latest_job,
    list_runs,
    list_schedules,
    lock_run,
    lock_schedule,
    unrecorded_job,
)

__all__ = [
    "count_schedules",
    "delete_schedule",
    "enabled_schedules",
    "get_schedule",
    "latest_job",
    "list_runs",
    "list_schedules",
    "lock_run",
    "lock_schedule",
    "unrecorded_job",
]
