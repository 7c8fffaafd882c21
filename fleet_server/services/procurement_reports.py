"""Weekly procurement reports (采购信息表): figures, submission, and the province's views.

A report's figures come from ``procurement_daily_totals`` only:

- 本期 (``period_fen``) is what the report carries: postings of the week itself
  (``week_fen``) plus adjustments (``adjustment_fen``), the late postings for weeks whose
  reports were already submitted, listed with their original dates.
- 累计 (``year_to_date_fen``) is every counting posting dated on or after the start of the
  reporting year and carried by this report or an earlier one. Adjustments for days
  before the year start are listed in 本期 but belong to the previous year's 累计.

A draft is computed afresh on every request. Submitting freezes the figures in the
report row; later postings for that week go to the next report. Reports are submitted in
week order; a week the school skips is never submitted, and its postings move into the
next report it submits, as adjustments.
"""

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fleet_server.core.config import ServerSettings
from fleet_server.models import (
    County,
    CountyCode,
    ProcurementChannel,
    ProcurementDailyTotal,
    ProcurementEntry,
    ProcurementReport,
    ReportStatus,
    Role,
    School,
    SchoolType,
)
from fleet_server.models.base import utc_now
from fleet_server.reporting.periods import ReportWeek, is_late, last_completed_week, year_start
from fleet_server.reporting.wan_yuan import apportion, format_wan
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit
from fleet_server.services.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from fleet_server.services.procurement_ledger import check_ledger_access
from fleet_server.services.procurement_posting import COUNTS, lock_ledgers

CHANNEL_ORDER = list(ProcurementChannel)


@dataclass(frozen=True)
class YearStart:
    """First day of the reporting year, as month and day (1 January unless configured)."""

    month: int = 1
    day: int = 1

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> "YearStart":
        month, day = settings.report_year_start_month_day
        return cls(month, day)

    def of(self, week: ReportWeek) -> date:
        return year_start(week, start_month=self.month, start_day=self.day)


@dataclass
class ReportView:
    school: School
    week: ReportWeek
    status: ReportStatus
    figures: dict[str, Any]
    submitted_at: datetime | None = None
    seen_at: datetime | None = None
    late: bool = False


# --- Figures ---------------------------------------------------------------------------------


def county_names(session: Session) -> dict[str, str]:
    """Return division code -> county name for every code, current or former."""
    rows = session.execute(select(CountyCode.code, County.name).join(County))
    return dict(rows.all())


def compute_figures(
    session: Session,
    school_ids: Collection[int],
    week: ReportWeek,
    year: YearStart,
    names: dict[str, str] | None = None,
) -> dict[int, dict[str, Any]]:
    """Return the live figures of each school's report for ``week``, amounts in fen."""
    names = county_names(session) if names is None else names
    first_day = year.of(week)
    table = ProcurementDailyTotal
    carried = session.execute(
        select(
            table.school_id,
            table.occurred_on,
            table.channel,
            table.county_code,
            table.reason,
            func.sum(table.amount_fen),
            func.sum(table.line_count),
        )
        .where(table.school_id.in_(school_ids), table.reported_week == week.monday)
        .group_by(
            table.school_id, table.occurred_on, table.channel, table.county_code, table.reason
        )
    ).all()
    year_rows = session.execute(
        select(table.school_id, table.channel, table.county_code, func.sum(table.amount_fen))
        .where(
            table.school_id.in_(school_ids),
            table.reported_week <= week.monday,
            table.occurred_on >= first_day,
            table.reason == COUNTS,
        )
        .group_by(table.school_id, table.channel, table.county_code)
    ).all()

    builders = {school_id: _FiguresBuilder(week, first_day, names) for school_id in school_ids}
    for school_id, day, channel, code, reason, amount, count in carried:
        builders[school_id].add_carried(day, channel, code, reason, int(amount), int(count))
    for school_id, channel, code, amount in year_rows:
        builders[school_id].add_year(channel, code, int(amount))
    return {school_id: builder.figures() for school_id, builder in builders.items()}


class _FiguresBuilder:
    def __init__(self, week: ReportWeek, first_day: date, names: dict[str, str]) -> None:
        self.week = week
        self.first_day = first_day
        self.names = names
        self.week_fen = 0
        self.adjustment_fen = 0
        self.period_by_county: dict[str, int] = defaultdict(int)
        self.period_by_channel: dict[ProcurementChannel, int] = defaultdict(int)
        self.year_by_county: dict[str, int] = defaultdict(int)
        self.year_by_channel: dict[ProcurementChannel, int] = defaultdict(int)
        self.adjustments: list[dict[str, Any]] = []
        self.not_counting: dict[tuple[str, ProcurementChannel], list[int]] = defaultdict(
            lambda: [0, 0]
        )

    def add_carried(
        self,
        day: date,
        channel: ProcurementChannel,
        code: str,
        reason: str,
        amount: int,
        count: int,
    ) -> None:
        late = day < self.week.monday
        if late and amount:
            self.adjustments.append(
                {
                    "occurred_on": day.isoformat(),
                    "channel": channel.value,
                    "county_code": code,
                    "county_name": self.names.get(code, code),
                    "reason": reason or None,
                    "amount_fen": amount,
                    "line_count": count,
                }
            )
        if reason != COUNTS:
            totals = self.not_counting[(reason, channel)]
            totals[0] += amount
            totals[1] += count
            return
        if late:
            self.adjustment_fen += amount
        else:
            self.week_fen += amount
        self.period_by_county[code] += amount
        self.period_by_channel[channel] += amount

    def add_year(self, channel: ProcurementChannel, code: str, amount: int) -> None:
        self.year_by_county[code] += amount
        self.year_by_channel[channel] += amount

    def figures(self) -> dict[str, Any]:
        codes = sorted(
            code
            for code in set(self.period_by_county) | set(self.year_by_county)
            if self.period_by_county.get(code) or self.year_by_county.get(code)
        )
        channels = [
            channel
            for channel in CHANNEL_ORDER
            if self.period_by_channel.get(channel) or self.year_by_channel.get(channel)
        ]
        self.adjustments.sort(
            key=lambda row: (row["occurred_on"], row["channel"], row["county_code"])
        )
        return {
            "week": self.week.monday.isoformat(),
            "year_start": self.first_day.isoformat(),
            "week_fen": self.week_fen,
            "adjustment_fen": self.adjustment_fen,
            "period_fen": self.week_fen + self.adjustment_fen,
            "year_to_date_fen": sum(self.year_by_county.values()),
            "by_county": [
                {
                    "county_code": code,
                    "county_name": self.names.get(code, code),
                    "period_fen": self.period_by_county.get(code, 0),
                    "year_to_date_fen": self.year_by_county.get(code, 0),
                }
                for code in codes
            ],
            "by_channel": [
                {
                    "channel": channel.value,
                    "period_fen": self.period_by_channel.get(channel, 0),
                    "year_to_date_fen": self.year_by_channel.get(channel, 0),
                }
                for channel in channels
            ],
            "adjustments": self.adjustments,
            "not_counting": [
                {
                    "reason": reason,
                    "channel": channel.value,
                    "amount_fen": amount,
                    "line_count": count,
                }
                for (reason, channel), (amount, count) in sorted(self.not_counting.items())
                if amount or count
            ],
        }


def wan_columns(figures: dict[str, Any]) -> dict[str, Any]:
    """Return the figures' amounts in 万元 (strings, two decimals) by the report's rule.

    The rows of each breakdown are apportioned to the rounded total, so that what a
    reader adds up on paper equals the total printed below it.
    """
    result: dict[str, Any] = {}
    for breakdown in ("by_county", "by_channel"):
        rows = figures[breakdown]
        period, period_total = apportion([row["period_fen"] for row in rows])
        year, year_total = apportion([row["year_to_date_fen"] for row in rows])
        result[breakdown] = [
            {"period": format_wan(p), "year_to_date": format_wan(y)}
            for p, y in zip(period, year, strict=True)
        ]
        result["period"] = format_wan(period_total)
        result["year_to_date"] = format_wan(year_total)
    # The period splits into the week itself and the adjustments by the same rule.
    parts, _ = apportion([figures["week_fen"], figures["adjustment_fen"]])
    result["week"], result["adjustment"] = (format_wan(part) for part in parts)
    return result


# --- One school's report -------------------------------------------------------------------------


# Reports exist from the first year of targeted procurement; the upper bound keeps date
# arithmetic far from date.max.
FIRST_REPORT_WEEK = date(2017, 1, 2)
LAST_REPORT_WEEK = date(2099, 12, 28)
# A report older than this many weeks can no longer be submitted: its entries go into the
# next report instead, so a mistyped year cannot hold up the school's reporting.
SUBMIT_WITHIN_WEEKS = 12


def parse_week(monday: date) -> ReportWeek:
    if not FIRST_REPORT_WEEK <= monday <= LAST_REPORT_WEEK:
        raise InvalidInputError(
            code="week_out_of_range",
            message=f"统计周期须在 {FIRST_REPORT_WEEK} 至 {LAST_REPORT_WEEK} 之间",
            message_en=f"A reporting week lies between {FIRST_REPORT_WEEK} and {LAST_REPORT_WEEK}",
            details={"field": "week"},
        )
    try:
        return ReportWeek(monday)
    except ValueError as error:
        raise InvalidInputError(
            code="week_not_monday",
            message=f"统计周期须从星期一开始：{monday} 不是星期一",
            message_en=f"A reporting week starts on a Monday; {monday} is not one",
            details={"field": "week"},
        ) from error


def get_report(
    session: Session,
    *,
    actor: Actor,
    school_id: int,
    week: ReportWeek,
    year: YearStart,
    now: datetime | None = None,
) -> ReportView:
    school = check_ledger_access(session, actor, school_id)
    now = now or utc_now()
    row = session.scalar(
        select(ProcurementReport).where(
            ProcurementReport.school_id == school_id, ProcurementReport.week == week.monday
        )
    )
    if row is not None:
        return ReportView(
            school=school,
            week=week,
            status=row.status,
            figures=row.figures,
            submitted_at=row.submitted_at,
            seen_at=row.seen_at,
            late=is_late(week, row.submitted_at, now),
        )
    figures = compute_figures(session, [school_id], week, year)[school_id]
    return ReportView(
        school=school,
        week=week,
        status=ReportStatus.DRAFT,
        figures=figures,
        late=is_late(week, None, now),
    )


def submit_report(
    session: Session,
    *,
    actor: Actor,
    school_id: int,
    week: ReportWeek,
    year: YearStart,
    now: datetime | None = None,
) -> ReportView:
    """Freeze the week's figures as the school's submitted report."""
    if actor.role is not Role.SCHOOL_ADMIN:
        raise PermissionDeniedError(
            message="没有权限：采购信息表由本校管理员报送",
            message_en="Only the school's own administrator submits its report",
        )
    check_ledger_access(session, actor, school_id)
    now = now or utc_now()
    if now < week.end_utc:
        raise InvalidInputError(
            code="week_not_over",
            message=f"{week.label} 尚未结束，周一零点后才能报送",
            message_en=f"The week {week.monday} is not over; submit it from the next Monday",
        )
    lock_ledgers(session, [school_id], exclusive=True)
    submitted = list(
        session.scalars(
            select(ProcurementReport.week)
            .where(ProcurementReport.school_id == school_id)
            .order_by(ProcurementReport.week.desc())
        )
    )
    if week.monday in submitted:
        raise InvalidInputError(
            code="report_already_submitted",
            message=f"{week.label} 的采购信息表已报送，不能更改；迟到的记录会列入下一期",
            message_en=f"The report of the week {week.monday} was already submitted; "
            "late entries go into the next report",
        )
    if submitted and submitted[0] > week.monday:
        raise InvalidInputError(
            code="report_out_of_order",
            message=f"已报送 {submitted[0]} 所在周，不能再报送更早的 {week.monday} 所在周",
            message_en=f"The week of {submitted[0]} is already submitted; "
            f"an earlier week ({week.monday}) can no longer be",
        )
    oldest = last_completed_week(now).monday - timedelta(weeks=SUBMIT_WITHIN_WEEKS - 1)
    if week.monday < oldest:
        raise InvalidInputError(
            code="report_too_old",
            message=f"{week.label} 已超过 {SUBMIT_WITHIN_WEEKS} 周，不能再报送；其记录会列入下一期",
            message_en=f"The week {week.monday} is more than {SUBMIT_WITHIN_WEEKS} weeks old "
            "and can no longer be submitted; its entries go into the next report",
        )
    if submitted:
        carry_skipped_weeks(session, school_id, after=submitted[0], into=week.monday)

    figures = compute_figures(session, [school_id], week, year)[school_id]
    report = ProcurementReport(
        school_id=school_id,
        week=week.monday,
        status=ReportStatus.SUBMITTED,
        submitted_at=now,
        submitted_by=actor.user_id,
        figures=figures,
    )
    session.add(report)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="report.submit",
        object_type="procurement_report",
        object_id=report.id,
        after={
            "school_id": school_id,
            "week": week.monday,
            "period_fen": figures["period_fen"],
            "year_to_date_fen": figures["year_to_date_fen"],
            "late": is_late(week, now, now),
        },
    )
    school = session.get(School, school_id)
    assert school is not None
    return ReportView(
        school=school,
        week=week,
        status=report.status,
        figures=figures,
        submitted_at=now,
        late=is_late(week, now, now),
    )


def can_submit(session: Session, school_id: int, week: ReportWeek, now: datetime) -> bool:
    """Return whether the school may submit this week's report now (see submit_report)."""
    if now < week.end_utc:
        return False
    if week.monday < last_completed_week(now).monday - timedelta(weeks=SUBMIT_WITHIN_WEEKS - 1):
        return False
    latest = session.scalar(
        select(func.max(ProcurementReport.week)).where(ProcurementReport.school_id == school_id)
    )
    return latest is None or latest < week.monday


def carry_skipped_weeks(session: Session, school_id: int, *, after: date, into: date) -> None:
    """Move the postings of weeks left unsubmitted, between ``after`` and ``into``, into ``into``.

    A school may skip a week; what was posted for it then appears as adjustments in the
    next report it submits, so that no amount is missing from every 本期. No row of the
    week ``into`` can already hold those days, so the key stays unique.
    """
    for model in (ProcurementDailyTotal, ProcurementEntry):
        session.execute(
            update(model)
            .where(
                model.school_id == school_id,
                model.reported_week > after,
                model.reported_week < into,
            )
            .values(reported_week=into)
        )


def mark_seen(
    session: Session, *, actor: Actor, school_id: int, week: ReportWeek, now: datetime | None = None
) -> ProcurementReport:
    """Record that the province has read a submitted report."""
    if actor.role is not Role.PROVINCE_ADMIN:
        raise PermissionDeniedError(
            message="没有权限：仅省级专班可以签收采购信息表",
            message_en="Only the province marks a report as seen",
        )
    report = session.scalars(
        select(ProcurementReport)
        .where(ProcurementReport.school_id == school_id, ProcurementReport.week == week.monday)
        .with_for_update()
    ).one_or_none()
    if report is None:
        raise NotFoundError("report", f"{school_id}/{week.monday}")
    if report.status is ReportStatus.SEEN:
        return report
    report.status = ReportStatus.SEEN
    report.seen_at = now or utc_now()
    report.seen_by = actor.user_id
    record_audit(
        session,
        actor=actor,
        action="report.seen",
        object_type="procurement_report",
        object_id=report.id,
        before={"status": ReportStatus.SUBMITTED},
        after={"status": ReportStatus.SEEN, "seen_at": report.seen_at},
    )
    return report


def late_entries(session: Session, *, school_id: int, week: ReportWeek) -> list[ProcurementEntry]:
    """Return the ledger entries carried into this report from earlier weeks."""
    return list(
        session.scalars(
            select(ProcurementEntry)
            .where(
                ProcurementEntry.school_id == school_id,
                ProcurementEntry.reported_week == week.monday,
                ProcurementEntry.occurred_on < week.monday,
            )
            .order_by(ProcurementEntry.occurred_on, ProcurementEntry.id)
        )
    )


# --- The province's views -----------------------------------------------------------------------


def province_overview(
    session: Session,
    *,
    actor: Actor,
    week: ReportWeek,
    year: YearStart,
    now: datetime | None = None,
    school_type: SchoolType | None = None,
) -> list[ReportView]:
    """Return every school's report of the week: submitted figures, or the live draft."""
    if not actor.sees_everything:
        raise PermissionDeniedError(
            message="没有权限：仅省级专班可以查看全省汇总",
            message_en="Only the province sees every school's report",
        )
    now = now or utc_now()
    statement = select(School).order_by(School.id)
    if school_type is not None:
        statement = statement.where(School.school_type == school_type)
    schools = list(session.scalars(statement))
    reports = {
        report.school_id: report
        for report in session.scalars(
            select(ProcurementReport).where(ProcurementReport.week == week.monday)
        )
    }
    drafts = [school.id for school in schools if school.id not in reports]
    live = compute_figures(session, drafts, week, year) if drafts else {}
    views = []
    for school in schools:
        report = reports.get(school.id)
        if report is None:
            views.append(
                ReportView(
                    school=school,
                    week=week,
                    status=ReportStatus.DRAFT,
                    figures=live[school.id],
                    late=is_late(week, None, now),
                )
            )
        else:
            views.append(
                ReportView(
                    school=school,
                    week=week,
                    status=report.status,
                    figures=report.figures,
                    submitted_at=report.submitted_at,
                    seen_at=report.seen_at,
                    late=is_late(week, report.submitted_at, now),
                )
            )
    return views


def rankings(views: Sequence[ReportView]) -> dict[SchoolType, list[ReportView]]:
    """Rank schools by 累计, 本科 and 高职 apart; ties keep the registry order."""
    ranked: dict[SchoolType, list[ReportView]] = {kind: [] for kind in SchoolType}
    for view in views:
        ranked[view.school.school_type].append(view)
    for kind in ranked:
        ranked[kind].sort(key=lambda view: -view.figures["year_to_date_fen"])
    return ranked


def county_totals(views: Sequence[ReportView]) -> list[dict[str, Any]]:
    """Sum the schools' figures by source county (old and new codes are one county)."""
    totals: dict[str, dict[str, Any]] = {}
    for view in views:
        for row in view.figures["by_county"]:
            entry = totals.setdefault(
                row["county_code"],
                {
                    "county_code": row["county_code"],
                    "county_name": row["county_name"],
                    "period_fen": 0,
                    "year_to_date_fen": 0,
                    "schools": 0,
                },
            )
            entry["period_fen"] += row["period_fen"]
            entry["year_to_date_fen"] += row["year_to_date_fen"]
            entry["schools"] += 1
    return sorted(totals.values(), key=lambda row: (-row["year_to_date_fen"], row["county_code"]))
