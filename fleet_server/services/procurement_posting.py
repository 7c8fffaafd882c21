"""Post amounts to the procurement totals that weekly reports read.

Every posting lands in one row of ``procurement_daily_totals`` per (school, report week,
day, channel, county, counting reason), added with ``INSERT ... ON CONFLICT DO UPDATE``,
so reports never scan sales or entries.

The report week of a posting is the week of its day. When the school already submitted
that week's report, it is the first week after the last submitted one instead, and that
report lists the posting as an adjustment with its original date. Reports are submitted in week
order, so "the week after the last submitted one" is always the next open report.

Posting and submitting exclude each other through the school's row: posting holds it
FOR SHARE (ingest workers do not wait for each other), submitting FOR UPDATE. A sale that
commits while a report is being submitted therefore either makes it into the submitted
figures or is carried into the next report, never neither. On SQLite the database's single
write lock gives the same order.
"""

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fleet_server.models import (
    Building,
    Cabinet,
    CountyCode,
    NotCountingReason,
    Placement,
    ProcurementChannel,
    ProcurementDailyTotal,
    ProcurementReport,
    School,
)
from fleet_server.reporting.periods import local_date, week_of_date
from fleet_server.services.sql import dialect_name, matches_any, take_sqlite_write_lock

COUNTS = ""  # the reason of an amount that counts


@dataclass(frozen=True, slots=True)
class Posting:
    school_id: int
    occurred_on: date
    channel: ProcurementChannel
    # Current division code of a poverty county, the entered code of another county, or "".
    county_code: str
    # COUNTS, or a NotCountingReason value.
    reason: str
    amount_fen: int
    line_count: int


@dataclass(frozen=True, slots=True)
class CertifiedProduct:
    """The fields of a catalog product that the counting rule reads."""

    id: int
    source_county_id: int
    valid_from: date
    valid_until: date


@dataclass(frozen=True, slots=True)
class PricedLine:
    """A sale line for the counting rule: its product (None if unknown) and amount."""

    product: CertifiedProduct | None
    amount_fen: int
    quantity: int


def lock_ledgers(session: Session, school_ids: Collection[int], *, exclusive: bool) -> None:
    """Lock the schools' rows: shared for posting, exclusive for submitting a report.

    Rows are locked in id order, so two transactions never wait for each other in a cycle.
    """
    if not school_ids:
        return
    if dialect_name(session) == "sqlite":
        take_sqlite_write_lock(session, School, min(school_ids))
        return
    statement = select(School.id).where(School.id.in_(sorted(school_ids))).order_by(School.id)
    session.execute(statement.with_for_update(read=not exclusive))


def last_submitted_weeks(session: Session, school_ids: Collection[int]) -> dict[int, date]:
    """Return the Monday of each school's latest submitted (or seen) report."""
    rows = session.execute(
        select(ProcurementReport.school_id, func.max(ProcurementReport.week))
        .where(ProcurementReport.school_id.in_(school_ids))
        .group_by(ProcurementReport.school_id)
    )
    return dict(rows.all())


def report_week_for(occurred_on: date, last_submitted: date | None) -> date:
    """Return the Monday of the report that carries a posting dated ``occurred_on``."""
    own_week = week_of_date(occurred_on).monday
    if last_submitted is None or own_week > last_submitted:
        return own_week
    return last_submitted + timedelta(days=7)


def post(session: Session, postings: Iterable[Posting]) -> None:
    """Add the postings to the daily totals inside the caller's transaction."""
    merged: dict[tuple[int, date, ProcurementChannel, str, str], list[int]] = defaultdict(
        lambda: [0, 0]
    )
    for posting in postings:
        if posting.amount_fen == 0 and posting.line_count == 0:
            continue
        key = (
            posting.school_id,
            posting.occurred_on,
            posting.channel,
            posting.county_code,
            posting.reason,
        )
        merged[key][0] += posting.amount_fen
        merged[key][1] += posting.line_count
    if not merged:
        return

    school_ids = {key[0] for key in merged}
    lock_ledgers(session, school_ids, exclusive=False)
    last_submitted = last_submitted_weeks(session, school_ids)
    rows = [
        {
            "school_id": school_id,
            "reported_week": report_week_for(occurred_on, last_submitted.get(school_id)),
            "occurred_on": occurred_on,
            "channel": channel.value,
            "county_code": county_code,
            "reason": reason,
            "amount_fen": amount_fen,
            "line_count": line_count,
        }
        for (school_id, occurred_on, channel, county_code, reason), (
            amount_fen,
            line_count,
        ) in merged.items()
    ]
    # Key order, so that concurrent workers update shared rows in one order.
    rows.sort(key=lambda row: tuple(str(row[name]) for name in UPSERT_KEY))
    _upsert(session, rows)


UPSERT_KEY = ("school_id", "reported_week", "occurred_on", "channel", "county_code", "reason")


def _upsert(session: Session, rows: Sequence[Mapping[str, object]]) -> None:
    table = ProcurementDailyTotal.__table__
    insert = (
        postgresql.insert(table)  # type: ignore[arg-type]
        if dialect_name(session) == "postgresql"
        else sqlite.insert(table)  # type: ignore[arg-type]
    )
    statement = insert.on_conflict_do_update(
        index_elements=list(UPSERT_KEY),
        set_={
            "amount_fen": table.c.amount_fen + insert.excluded.amount_fen,
            "line_count": table.c.line_count + insert.excluded.line_count,
        },
    )
    session.execute(statement, list(rows))


# --- Cabinet sales ---------------------------------------------------------------------------


def current_county_codes(session: Session) -> dict[int, str]:
    """Return county id -> current division code of every poverty county."""
    rows = session.execute(
        select(CountyCode.county_id, CountyCode.code).where(CountyCode.is_current.is_(True))
    )
    return dict(rows.all())


def cabinet_schools(session: Session, cabinet_ids: Collection[int]) -> dict[int, int]:
    """Return cabinet id -> id of the school where the cabinet is placed."""
    rows = session.execute(
        select(Cabinet.id, Building.school_id)
        .join(Placement, Cabinet.placement_id == Placement.id)
        .join(Building, Placement.building_id == Building.id)
        .where(matches_any(session, Cabinet.id, cabinet_ids))
    )
    return dict(rows.all())


def line_reason(product: CertifiedProduct | None, day: date) -> str:
    """Return COUNTS or why a cabinet sale line of ``product`` sold on ``day`` does not count."""
    if product is None:
        return NotCountingReason.NOT_CERTIFIED.value
    if not product.valid_from <= day <= product.valid_until:
        return NotCountingReason.CERTIFICATE_NOT_VALID.value
    return COUNTS


def paid_amounts(lines: Sequence[PricedLine], captured_fen: int) -> list[int]:
    """Split what the payment captured over the lines, in line order.

    The capture is less than the lines' total only for a flagged sale (the hold ran out,
    or no purchase session paid for it); the first lines count as paid, the rest not.
    """
    remaining = captured_fen
    paid = []
    for line in lines:
        amount = min(line.amount_fen, remaining)
        paid.append(amount)
        remaining -= amount
    return paid


def sale_postings(
    *,
    school_id: int,
    recorded_at: datetime,
    lines: Sequence[PricedLine],
    captured_fen: int,
    county_codes: dict[int, str],
) -> list[Posting]:
    """Return the postings of one new cabinet sale."""
    day = local_date(recorded_at)
    postings = []
    for line, paid in zip(lines, paid_amounts(lines, captured_fen), strict=True):
        county_code = (
            county_codes.get(line.product.source_county_id, "") if line.product is not None else ""
        )
        if paid:
            postings.append(
                Posting(
                    school_id,
                    day,
                    ProcurementChannel.CABINET,
                    county_code,
                    line_reason(line.product, day),
                    paid,
                    1,
                )
            )
        if line.amount_fen - paid:
            postings.append(
                Posting(
                    school_id,
                    day,
                    ProcurementChannel.CABINET,
                    county_code,
                    NotCountingReason.NOT_PAID.value,
                    line.amount_fen - paid,
                    0 if paid else 1,
                )
            )
    return postings


def refund_postings(
    *,
    school_id: int,
    recorded_at: datetime,
    lines: Sequence[PricedLine],
    captured_fen: int,
    refunded_before_fen: int,
    refund_fen: int,
    refunded_lines: dict[int, int] | None,
    county_codes: dict[int, str],
) -> list[Posting]:
    """Return the negative postings of a refund, dated on the day of the sale.

    A refund by lines takes back those lines' amounts (``refunded_lines``: line index ->
    amount). A refund by amount takes the paid amounts back from the last line towards the
    first, continuing where the earlier refunds of the sale stopped, so the refunds of a
    sale never take back more from a line than was paid for it.
    """
    day = local_date(recorded_at)
    paid = paid_amounts(lines, captured_fen)
    taken = [0] * len(lines)
    if refunded_lines is not None:
        for index, amount in refunded_lines.items():
            taken[index] = min(amount, paid[index])
    else:
        skip = refunded_before_fen
        left = refund_fen
        for index in reversed(range(len(lines))):
            available = paid[index]
            skipped = min(skip, available)
            skip -= skipped
            available -= skipped
            amount = min(left, available)
            taken[index] = amount
            left -= amount
    postings = []
    for index, line in enumerate(lines):
        if not taken[index]:
            continue
        county_code = (
            county_codes.get(line.product.source_county_id, "") if line.product is not None else ""
        )
        postings.append(
            Posting(
                school_id,
                day,
                ProcurementChannel.CABINET,
                county_code,
                line_reason(line.product, day),
                -taken[index],
                0,
            )
        )
    return postings
