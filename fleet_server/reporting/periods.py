"""Reporting weeks in Asia/Shanghai time.

A reporting week runs from Monday 00:00 to the next Monday 00:00 in
Asia/Shanghai (China has kept UTC+8 without daylight saving since 1991), and
its report is due on the Tuesday after it. 本期 is one week; 累计 runs from the
start of the reporting year, 1 January unless configured otherwise, to the
end of the week. Timestamps are stored in UTC; every bucketing goes through
``local_date`` so that a sale at 23:59:59 on Sunday and one at 00:00:00 on
Monday, local time, land in different weeks whatever their UTC date.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True, slots=True, order=True)
class ReportWeek:
    """One reporting week, identified by its Monday."""

    monday: date

    def __post_init__(self) -> None:
        if self.monday.weekday() != 0:
            raise ValueError(f"{self.monday} is not a Monday")

    @property
    def sunday(self) -> date:
        return self.monday + timedelta(days=6)

    @property
    def due(self) -> date:
        """The Tuesday after the week, when the report is due."""
        return self.monday + timedelta(days=8)

    @property
    def start_utc(self) -> datetime:
        return datetime.combine(self.monday, time(), SHANGHAI).astimezone(UTC)

    @property
    def end_utc(self) -> datetime:
        """The first instant after the week (next Monday 00:00 local), in UTC."""
        return self.next().start_utc

    def next(self) -> "ReportWeek":
        return ReportWeek(self.monday + timedelta(days=7))

    def previous(self) -> "ReportWeek":
        return ReportWeek(self.monday - timedelta(days=7))

    def contains(self, moment: datetime) -> bool:
        return self.start_utc <= moment < self.end_utc

    @property
    def label(self) -> str:
        """The week as the report names it, e.g. ``2026-11-30 至 2026-12-06``."""
        return f"{self.monday.isoformat()} 至 {self.sunday.isoformat()}"


def local_date(moment: datetime) -> date:
    """Return the Asia/Shanghai calendar date of an aware ``moment``."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must carry a time zone; naive datetimes are ambiguous")
    return moment.astimezone(SHANGHAI).date()


def week_of(moment: datetime) -> ReportWeek:
    """Return the reporting week that contains ``moment``."""
    day = local_date(moment)
    return ReportWeek(day - timedelta(days=day.weekday()))


def week_of_date(day: date) -> ReportWeek:
    return ReportWeek(day - timedelta(days=day.weekday()))


def year_start(week: ReportWeek, *, start_month: int = 1, start_day: int = 1) -> date:
    """Return the first day of the reporting year that the week's Sunday falls in.

    累计 of a week spanning New Year belongs to the year of its Sunday, so the
    first report of a year counts only the new year's days of that week.
    """
    sunday = week.sunday
    start = date(sunday.year, start_month, start_day)
    return start if start <= sunday else date(sunday.year - 1, start_month, start_day)


def last_completed_week(now: datetime) -> ReportWeek:
    """Return the week whose report is the next one due at ``now``."""
    return week_of(now).previous()


def is_late(week: ReportWeek, submitted_at: datetime | None, now: datetime) -> bool:
    """Return True if the report was not submitted by the end of its due Tuesday."""
    deadline = datetime.combine(week.due + timedelta(days=1), time(), SHANGHAI)
    if submitted_at is not None:
        return submitted_at >= deadline
    return now >= deadline
