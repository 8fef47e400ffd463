"""Cron expressions in a time zone: check them, and find their latest and next occurrence.

Five fields (minute hour day-of-month month day-of-week), or six with the seconds first (as
Spring and node-cron write them), or one of the `@daily`-style aliases. Occurrences are
computed by croniter on datetimes aware of the schedule's IANA time zone and returned in UTC.

Daylight saving time, as Vixie cron handles it: a wall-clock time that does not exist (the
spring-forward gap) fires once, at the end of the gap; a time that happens twice (the
fall-back hour) fires once, at its first pass — unless the expression fires every hour, in
which case each real hour fires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import HOUR_FIELD, CroniterBadDateError, CroniterError, croniter

FIELDS_5 = ("minute", "hour", "day-of-month", "month", "day-of-week")
FIELDS_6 = ("second", *FIELDS_5)
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Occurrences a single lookup may pass over (DST second passes) before giving up.
_MAX_STEPS = 10_000
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class CronSchedule:
    """A checked cron expression (normalized: single spaces, aliases expanded) in a zone."""

    expression: str
    timezone: str

    @property
    def has_seconds(self) -> bool:
        return len(self.expression.split()) == 6

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _iter(self, start: datetime) -> croniter:
        return croniter(
            self.expression,
            start.astimezone(self.zone),
            second_at_beginning=self.has_seconds,
        )

    def _fires_every_hour(self) -> bool:
        return bool(self._iter(datetime.now(UTC)).expanded[HOUR_FIELD] == ["*"])

    def _is_second_pass(self, occurrence: datetime) -> bool:
        """Is this the repeat of a wall-clock time in the fall-back hour?"""
        local = occurrence.astimezone(self.zone)
        return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()

    def _walk(self, start: datetime, *, forward: bool) -> datetime:
        it = self._iter(start)
        every_hour = self._fires_every_hour()
        for _ in range(_MAX_STEPS):
            found: datetime = it.get_next(datetime) if forward else it.get_prev(datetime)
            occurrence = found.astimezone(UTC)
            if every_hour or not self._is_second_pass(occurrence):
                return occurrence
        raise ValueError(f"cron {self.expression!r} has no occurrence near {start.isoformat()}")

    def latest(self, now: datetime) -> datetime:
        """The latest occurrence at or before `now` (UTC)."""
        # croniter's get_prev is strictly before its start: start just after `now`.
        return self._walk(_aware(now) + _TICK, forward=False)

    def next(self, after: datetime) -> datetime:
        """The first occurrence strictly after `after` (UTC)."""
        return self._walk(_aware(after), forward=True)


def parse_cron(expression: str) -> str:
    """The expression normalized, or a ValueError that names the field at fault."""
    text = " ".join(expression.split())
    if not text:
        raise ValueError("the cron expression is empty")
    text = ALIASES.get(text.lower(), text)
    if text.startswith("@"):
        raise ValueError(f"unknown cron alias {text!r}; known: {', '.join(ALIASES)}")
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise ValueError(
            f"a cron expression has 5 fields ({' '.join(FIELDS_5)}) or 6 with the seconds "
            f"first; {text!r} has {len(fields)}"
        )
    names = FIELDS_6 if len(fields) == 6 else FIELDS_5
    # Checked one field at a time (the others '*'), so the message can say which is wrong.
    for i, (name, value) in enumerate(zip(names, fields, strict=True)):
        alone = " ".join(value if j == i else "*" for j in range(len(fields)))
        try:
            croniter(alone, second_at_beginning=len(fields) == 6)
        except (CroniterError, ValueError) as exc:
            raise ValueError(f"the {name} field {value!r} is not valid: {exc}") from None
    try:
        croniter(text, second_at_beginning=len(fields) == 6)
    except (CroniterError, ValueError) as exc:
        raise ValueError(f"cron {text!r} is not valid: {exc}") from None
    return text


def parse_timezone(name: str) -> str:
    """The IANA zone name if zoneinfo knows it, or a ValueError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None
    return name


def parse(expression: str, timezone: str = "UTC") -> CronSchedule:
    """A checked schedule; a ValueError names what is wrong (a field, the zone, or that the
    expression never occurs, such as '0 0 31 2 *')."""
    cron = CronSchedule(parse_cron(expression), parse_timezone(timezone))
    try:
        cron.next(datetime.now(UTC))
    except (CroniterBadDateError, ValueError):
        raise ValueError(f"cron {cron.expression!r} never occurs") from None
    return cron


def shortest_interval(expression: str, *, samples: int = 200) -> float:
    """The shortest time in seconds between two occurrences of a normalized expression, as
    measured over its next `samples` occurrences (in UTC: the fields repeat within that many
    for any expression that fires often enough to matter)."""
    six = len(expression.split()) == 6
    it = croniter(expression, datetime.now(UTC), second_at_beginning=six)
    shortest = float("inf")
    previous = it.get_next(float)
    for _ in range(samples):
        current = it.get_next(float)
        shortest = min(shortest, current - previous)
        previous = current
    return shortest


def latest_occurrence(expression: str, timezone: str, now: datetime) -> datetime:
    """The latest occurrence at or before `now`, in UTC."""
    return CronSchedule(parse_cron(expression), parse_timezone(timezone)).latest(now)


def next_occurrence(expression: str, timezone: str, after: datetime) -> datetime:
    """The first occurrence strictly after `after`, in UTC."""
    return CronSchedule(parse_cron(expression), parse_timezone(timezone)).next(after)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a moment without a time zone is ambiguous: pass an aware datetime")
    return moment
