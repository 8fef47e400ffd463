"""Cron expressions and the due-occurrence rule: parsing, time zones, DST, missed nights."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metadata.models import Schedule
from scheduler.cron import latest_occurrence, next_occurrence, parse, parse_cron, parse_timezone
from scheduler.service import due_occurrence


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("0 2 * * *", "0 2 * * *"),
        ("  0   2 * *   * ", "0 2 * * *"),
        ("*/3 * * * * *", "*/3 * * * * *"),
        ("0 30 2 * * 1-5", "0 30 2 * * 1-5"),
        ("0 9 * * MON-FRI", "0 9 * * MON-FRI"),
        ("@daily", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_valid_expressions_are_normalized(given: str, normalized: str) -> None:
    assert parse_cron(given) == normalized


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "empty"),
        ("* * * *", "5 fields (minute hour day-of-month month day-of-week) or 6"),
        ("* * * * * * *", "has 7"),
        ("61 * * * *", "the minute field '61'"),
        ("0 24 * * *", "the hour field '24'"),
        ("0 0 32 * *", "the day-of-month field '32'"),
        ("0 0 * 13 *", "the month field '13'"),
        ("0 0 * * 8", "the day-of-week field '8'"),
        ("60 * * * * *", "the second field '60'"),
        ("0 61 * * * *", "the minute field '61'"),
        ("x 2 * * *", "the minute field 'x'"),
        ("@reboot", "unknown cron alias '@reboot'"),
    ],
)
def test_bad_expressions_say_what_is_wrong(given: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_cron(given)
    assert message in str(caught.value)


def test_an_expression_that_never_occurs_is_refused() -> None:
    with pytest.raises(ValueError, match="never occurs"):
        parse("0 0 31 2 *")


def test_time_zones_are_iana_names() -> None:
    assert parse_timezone("Europe/Paris") == "Europe/Paris"
    assert parse("0 2 * * *", "Asia/Kolkata").timezone == "Asia/Kolkata"
    for bad in ("Mars/Olympus", "../etc/passwd", "", "CEST+2"):
        with pytest.raises(ValueError, match="unknown time zone") as caught:
            parse_timezone(bad)
        assert "an IANA name such as 'UTC' or 'Europe/Paris'" in str(caught.value)


# --- occurrences ----------------------------------------------------------------------


def test_latest_is_at_or_before_now_and_next_strictly_after() -> None:
    at_two = utc(2024, 1, 10, 2, 0)
    assert latest_occurrence("0 2 * * *", "UTC", at_two) == at_two
    assert latest_occurrence("0 2 * * *", "UTC", at_two - timedelta(microseconds=1)) == utc(
        2024, 1, 9, 2, 0
    )
    assert next_occurrence("0 2 * * *", "UTC", at_two) == utc(2024, 1, 11, 2, 0)
    assert next_occurrence("0 2 * * *", "UTC", at_two - timedelta(seconds=1)) == at_two


def test_seconds_come_first_in_six_fields() -> None:
    now = utc(2024, 1, 10, 12, 0, 7, 500_000)
    assert latest_occurrence("*/3 * * * * *", "UTC", now) == utc(2024, 1, 10, 12, 0, 6)
    assert next_occurrence("*/3 * * * * *", "UTC", now) == utc(2024, 1, 10, 12, 0, 9)
    # "30 0 2 * * *": second 30 of 02:00, not minute 30.
    assert next_occurrence("30 0 2 * * *", "UTC", utc(2024, 1, 10)) == utc(2024, 1, 10, 2, 0, 30)


def test_a_time_zone_moves_the_occurrence_in_utc() -> None:
    # 02:00 in Paris is 01:00 UTC in winter, 00:00 UTC in summer.
    assert next_occurrence("0 2 * * *", "Europe/Paris", utc(2024, 1, 10)) == utc(2024, 1, 10, 1)
    assert next_occurrence("0 2 * * *", "Europe/Paris", utc(2024, 7, 9, 12)) == utc(2024, 7, 10)
    assert next_occurrence("0 2 * * *", "Asia/Kolkata", utc(2024, 1, 10)) == utc(
        2024, 1, 10, 20, 30
    )


def _occurrences(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    found, moment = [], start
    while (moment := next_occurrence(expr, tz, moment)) <= end:
        found.append(moment)
    return found


def test_dst_spring_forward_fires_a_missing_time_once_after_the_gap() -> None:
    # Paris, 2024-03-31: 02:00 -> 03:00. 02:30 does not exist that night.
    night = _occurrences("30 2 * * *", "Europe/Paris", utc(2024, 3, 30, 12), utc(2024, 4, 1, 12))
    assert night == [utc(2024, 3, 31, 1, 0), utc(2024, 4, 1, 0, 30)]  # 03:00 CEST, 02:30 CEST


def test_dst_fall_back_fires_a_repeated_time_once() -> None:
    # Paris, 2024-10-27: 03:00 CEST -> 02:00 CET. 02:30 happens twice; the job runs once.
    night = _occurrences("30 2 * * *", "Europe/Paris", utc(2024, 10, 26, 12), utc(2024, 10, 28, 12))
    assert night == [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]
    assert latest_occurrence("30 2 * * *", "Europe/Paris", utc(2024, 10, 27, 1, 45)) == utc(
        2024, 10, 27, 0, 30
    )


def test_dst_fall_back_keeps_every_real_hour_of_an_hourly_schedule() -> None:
    hours = _occurrences(
        "0 * * * *", "Europe/Paris", utc(2024, 10, 26, 23, 30), utc(2024, 10, 27, 3)
    )
    assert hours == [utc(2024, 10, 27, h) for h in range(4)]  # 02:00 CEST and 02:00 CET both


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        latest_occurrence("0 2 * * *", "UTC", datetime(2024, 1, 1))


@settings(max_examples=150, deadline=None)
@given(
    expr=st.sampled_from(["0 2 * * *", "*/15 1-3 * * *", "0 * * * *", "*/20 * * * * *"]),
    tz=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]),
    now=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2025, 12, 31)),
)
def test_latest_and_next_bracket_now(expr: str, tz: str, now: datetime) -> None:
    now = now.replace(tzinfo=UTC)
    latest = latest_occurrence(expr, tz, now)
    following = next_occurrence(expr, tz, latest)
    assert latest <= now < following
    assert next_occurrence(expr, tz, now) == following
    assert latest_occurrence(expr, tz, latest) == latest


# --- which occurrence is due ----------------------------------------------------------


def _schedule(**fields: object) -> Schedule:
    values: dict[str, object] = {
        "workspace_id": "w",
        "name": "nightly",
        "manifest": {},
        "cron": "0 2 * * *",
        "timezone": "UTC",
        "created_at": utc(2024, 1, 1, 12),
        "updated_at": utc(2024, 1, 1, 12),
    }
    values.update(fields)
    return Schedule(**values)  # type: ignore[arg-type]


def test_a_beat_down_for_three_nights_fires_once_for_the_latest_night() -> None:
    schedule = _schedule(last_occurrence=utc(2024, 1, 10, 2))
    now = utc(2024, 1, 13, 9, 30)  # the nights of the 11th, 12th and 13th were missed
    assert due_occurrence(schedule, now) == utc(2024, 1, 13, 2)
    schedule.last_occurrence = utc(2024, 1, 13, 2)  # claimed
    assert due_occurrence(schedule, now) is None
    assert due_occurrence(schedule, utc(2024, 1, 14, 1, 59)) is None
    assert due_occurrence(schedule, utc(2024, 1, 14, 2)) == utc(2024, 1, 14, 2)


def test_nothing_before_creation_or_the_last_change_is_due() -> None:
    fresh = _schedule(created_at=utc(2024, 1, 10, 3), updated_at=utc(2024, 1, 10, 3))
    assert due_occurrence(fresh, utc(2024, 1, 10, 9)) is None  # 02:00 was before creation
    assert due_occurrence(fresh, utc(2024, 1, 11, 2)) == utc(2024, 1, 11, 2)
    # Re-enabled (or re-timed) at 09:00 after three nights off: the past is not caught up.
    changed = _schedule(last_occurrence=utc(2024, 1, 7, 2), updated_at=utc(2024, 1, 10, 9))
    assert due_occurrence(changed, utc(2024, 1, 10, 10)) is None
    assert due_occurrence(changed, utc(2024, 1, 11, 2, 0, 1)) == utc(2024, 1, 11, 2)


def test_a_disabled_schedule_is_never_due() -> None:
    assert due_occurrence(_schedule(enabled=False), utc(2024, 1, 5, 3)) is None


def test_due_in_the_schedules_time_zone() -> None:
    schedule = _schedule(timezone="Europe/Paris")
    assert due_occurrence(schedule, utc(2024, 1, 5, 0, 59)) == utc(2024, 1, 4, 1)
    assert due_occurrence(schedule, utc(2024, 1, 5, 1)) == utc(2024, 1, 5, 1)
