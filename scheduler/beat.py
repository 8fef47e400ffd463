"""Celery beat driven by the schedules in the metadata DB (`celery beat -S
scheduler.beat:DatabaseScheduler`, or `bayport beat`).

Every beat re-reads the enabled schedules every `BAYPORT_BEAT_REFRESH_SECONDS`, so schedules
made or changed through the API take effect without a restart, and sleeps until the next
occurrence of any of them. When one is due it claims the occurrence in the DB
(scheduler.service.fire_due); only the beat that wins the claim sends `bayport.run_schedule`,
so any number of beats may run side by side. Static `beat_schedule` entries still run, by
Celery's own scheduler underneath.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery.beat import Scheduler

from bayport.heartbeats import beat_heartbeat_path, touch
from bayport.settings import get_settings
from bootstrap import get_container
from metadata.models import Schedule, utcnow
from metadata.queries import schedules as queries
from scheduler.cron import CronSchedule
from scheduler.service import fire_due, floor_of

log = logging.getLogger("bayport.scheduler.beat")


@dataclass
class _Watch:
    """What a beat remembers of a schedule between two reads of the DB."""

    schedule_id: str
    cron: CronSchedule
    floor: datetime  # occurrences at or before it are done (here or by another beat)
    due_at: datetime  # when to look again


def _watch(schedule: Schedule, now: datetime) -> _Watch:
    cron = CronSchedule(schedule.cron, schedule.timezone)
    floor = floor_of(schedule)
    due = cron.latest(now) > floor
    return _Watch(schedule.id, cron, floor, now if due else cron.next(now))


class DatabaseScheduler(Scheduler):  # type: ignore[misc]  # celery is untyped
    """A beat scheduler whose entries are the DB's enabled schedules (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._watches: dict[str, _Watch] = {}
        self._next_read = 0.0  # time.monotonic() of the next DB read
        super().__init__(*args, **kwargs)

    @property
    def refresh_seconds(self) -> float:
        return float(get_container().settings.beat_refresh_seconds)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Fire what is due; return how long beat may sleep (until the next occurrence, the
        next DB read, or the next static entry, whichever is first)."""
        # Liveness (`bayport health beat`): this loop turns at least every refresh.
        touch(beat_heartbeat_path(get_settings()))
        static_wait = float(super().tick(*args, **kwargs))
        try:
            if time.monotonic() >= self._next_read:
                self._read_schedules()
            self._fire_due()
        except Exception:  # the DB or the broker is away: read and try again a bit later
            log.exception("beat: schedules could not be read or fired; retrying")
            self._next_read = time.monotonic() + self.refresh_seconds
            return max(0.0, min(static_wait, self.refresh_seconds))
        return max(0.0, min(static_wait, self._wait()))

    def _read_schedules(self) -> None:
        ctx = get_container().ctx
        with ctx.db.uow() as uow:
            schedules = queries.enabled_schedules(uow.session)
        now = utcnow()
        watches = {}
        for schedule in schedules:
            try:
                watches[schedule.id] = _watch(schedule, now)
            except ValueError:  # one bad row must not stop the others
                log.exception("beat: schedule %s cannot be computed; left out", schedule.id)
        self._watches = watches
        self._next_read = time.monotonic() + self.refresh_seconds

    def _fire_due(self) -> None:
        ctx = get_container().ctx
        now = utcnow()
        due = [w for w in self._watches.values() if w.due_at <= now]
        for watch in due:
            occurrence = watch.cron.latest(now)
            if occurrence > watch.floor:
                run = fire_due(ctx, watch.schedule_id, now)
                if run is not None:
                    log.info(
                        "beat: schedule %s occurrence %s: sent run %s",
                        watch.schedule_id,
                        occurrence.isoformat(),
                        run.id,
                    )
                else:
                    log.info(
                        "beat: schedule %s occurrence %s: not claimed here (another beat has "
                        "it, or the schedule changed)",
                        watch.schedule_id,
                        occurrence.isoformat(),
                    )
                watch.floor = occurrence  # fired here or elsewhere: done either way
            watch.due_at = watch.cron.next(now)

    def _wait(self) -> float:
        until_read = self._next_read - time.monotonic()
        soonest = min((w.due_at for w in self._watches.values()), default=None)
        if soonest is None:
            return until_read
        return min(until_read, (soonest - utcnow()).total_seconds())

    @property
    def info(self) -> str:
        return f"    . db schedules -> re-read every {self.refresh_seconds:g}s"
