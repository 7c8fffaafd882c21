"""Reporting weeks in Asia/Shanghai time and the 万元 rounding rule."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet_server.reporting.periods import (
    SHANGHAI,
    ReportWeek,
    is_late,
    local_date,
    week_of,
    year_start,
)
from fleet_server.reporting.wan_yuan import FEN_PER_UNIT, apportion, wan_yuan


def test_sunday_night_and_monday_midnight_are_different_weeks() -> None:
    sunday = datetime(2026, 11, 29, 23, 59, 59, tzinfo=SHANGHAI)
    monday = datetime(2026, 11, 30, 0, 0, 0, tzinfo=SHANGHAI)

    assert week_of(sunday) == ReportWeek(date(2026, 11, 23))
    assert week_of(monday) == ReportWeek(date(2026, 11, 30))


def test_utc_timestamp_near_midnight_uses_local_week() -> None:
    # 16:30 UTC on Sunday is 00:30 on Monday in Shanghai.
    stored = datetime(2026, 11, 29, 16, 30, tzinfo=UTC)

    assert local_date(stored) == date(2026, 11, 30)
    assert week_of(stored).monday == date(2026, 11, 30)
    assert week_of(stored - timedelta(hours=1)).monday == date(2026, 11, 23)


def test_week_bounds_in_utc() -> None:
    week = ReportWeek(date(2026, 11, 30))

    assert week.start_utc == datetime(2026, 11, 29, 16, 0, tzinfo=UTC)
    assert week.end_utc == datetime(2026, 12, 6, 16, 0, tzinfo=UTC)
    assert week.contains(datetime(2026, 12, 6, 15, 59, 59, tzinfo=UTC))
    assert not week.contains(week.end_utc)
    assert week.due == date(2026, 12, 8)
    assert week.due.weekday() == 1
    assert week.label == "2026-11-30 至 2026-12-06"


def test_naive_timestamp_is_rejected() -> None:
    with pytest.raises(ValueError, match="time zone"):
        week_of(datetime(2026, 11, 30, 8, 0))


def test_week_must_start_on_monday() -> None:
    with pytest.raises(ValueError, match="Monday"):
        ReportWeek(date(2026, 12, 1))


def test_year_start_follows_the_weeks_sunday() -> None:
    spanning = ReportWeek(date(2025, 12, 29))  # Sunday is 2026-01-04

    assert year_start(spanning) == date(2026, 1, 1)
    assert year_start(ReportWeek(date(2026, 11, 30))) == date(2026, 1, 1)
    assert year_start(ReportWeek(date(2026, 8, 24)), start_month=9) == date(2025, 9, 1)
    assert year_start(ReportWeek(date(2026, 8, 31)), start_month=9) == date(2026, 9, 1)


def test_late_after_due_tuesday() -> None:
    week = ReportWeek(date(2026, 11, 23))  # due Tuesday 2026-12-01
    tuesday_evening = datetime(2026, 12, 1, 23, 0, tzinfo=SHANGHAI)
    wednesday = datetime(2026, 12, 2, 0, 0, tzinfo=SHANGHAI)

    assert not is_late(week, None, tuesday_evening)
    assert is_late(week, None, wednesday)
    assert not is_late(week, tuesday_evening, wednesday)
    assert is_late(week, wednesday, wednesday)


@pytest.mark.parametrize(
    ("fen", "shown"),
    [(0, "0.00"), (4_999, "0.00"), (5_000, "0.01"), (1_234_567, "1.23"), (1_235_000, "1.24")],
)
def test_wan_yuan_rounds_half_up(fen: int, shown: str) -> None:
    assert f"{wan_yuan(fen):.2f}" == shown


def test_rows_add_up_to_total() -> None:
    rows, total = apportion([5_000, 5_000, 5_000])

    # Each row alone rounds up to 0.01, but the total of 1.5 units rounds to 2.
    assert total == Decimal("0.02")
    assert sum(rows) == total
    assert rows == [Decimal("0.01"), Decimal("0.01"), Decimal("0.00")]


@given(st.lists(st.integers(-(10**9), 10**9), max_size=40))
def test_apportioned_rows_always_add_up(rows_fen: list[int]) -> None:
    rows, total = apportion(rows_fen)

    assert sum(rows, Decimal(0)) == total
    assert total == wan_yuan(sum(rows_fen))
    for fen, shown in zip(rows_fen, rows, strict=True):
        assert abs(shown * 100 * FEN_PER_UNIT - fen) < FEN_PER_UNIT


def test_negative_adjustment_rows_round_with_the_rest() -> None:
    rows, total = apportion([25_000, -14_000])

    # Floors 2 and -2 units with remainders 0.5 and 0.6; the 1.1 units round to 1, and
    # the one missing unit goes to the larger remainder: -1.4 units shows as -0.01.
    assert total == Decimal("0.01")
    assert rows == [Decimal("0.02"), Decimal("-0.01")]
