"""Request and response bodies of the procurement ledger and the weekly reports."""

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_core import PydanticUndefined

from fleet_server.models import (
    NotCountingReason,
    ProcurementChannel,
    ProcurementEntry,
    ReportStatus,
    SchoolType,
    VoucherFile,
)
from fleet_server.reporting.wan_yuan import format_wan, wan_yuan
from fleet_server.schemas.common import DivisionCodeStr, RequestModel
from fleet_server.services.procurement_ledger import EntryInput
from fleet_server.services.procurement_reports import ReportView, wan_columns

# Text fields refuse control characters, which no voucher or product name contains and
# which PostgreSQL text columns cannot all store.
PLAIN_TEXT = r"^[^\x00-\x1f\x7f]*$"


def text(max_length: int, *, min_length: int = 1, default: Any = PydanticUndefined) -> Any:
    """Return the Field of a one-line text: no control characters, length limits."""
    return Field(default, min_length=min_length, max_length=max_length, pattern=PLAIN_TEXT)


CHANNEL_NAMES: dict[ProcurementChannel, tuple[str, str]] = {
    ProcurementChannel.CABINET: ("智能专柜", "Smart cabinets"),
    ProcurementChannel.CANTEEN: ("食堂", "Canteen"),
    ProcurementChannel.UNION_WELFARE: ("工会福利", "Union welfare"),
    ProcurementChannel.CAMPUS_SHOP: ("校内超市/扶贫窗口", "Campus shop / poverty-relief window"),
    ProcurementChannel.SERVICE_COMPANY: ("后勤服务企业", "Service company"),
}

REASON_NAMES: dict[NotCountingReason, tuple[str, str]] = {
    NotCountingReason.NOT_CERTIFIED: ("非认定扶贫产品", "Not a certified product"),
    NotCountingReason.CERTIFICATE_NOT_VALID: (
        "采购日期不在认定有效期内",
        "Bought outside the certificate's validity",
    ),
    NotCountingReason.NOT_POVERTY_COUNTY: (
        "产品来源非贫困县",
        "Source county is not a poverty county",
    ),
    NotCountingReason.COUNTY_MISMATCH: (
        "产品来源与认定信息不符",
        "Source county differs from the certificate's",
    ),
    NotCountingReason.NOT_PAID: ("未付款", "Not paid"),
}

# Purchases are recorded from the year targeted procurement began; earlier dates are typos.
FIRST_ENTRY_DATE = date(2017, 1, 1)
ManualChannel = Literal["canteen", "union_welfare", "campus_shop", "service_company"]
AmountFen = Annotated[
    int,
    Field(strict=True, gt=0, le=10**10, description="amount in fen (0.01 yuan)"),
]


class EntryCreate(RequestModel):
    channel: ManualChannel = Field(description="采购渠道 (cabinet sales are posted automatically)")
    occurred_on: date = Field(description="date of the purchase, Asia/Shanghai")
    product_name: str = text(200)
    certificate_number: str | None = Field(
        default=None, max_length=64, pattern=r"^[^\s]+$", description="认定编号"
    )
    county_code: DivisionCodeStr | None = Field(
        default=None, description="division code of the source county, current or former"
    )
    county_name: str | None = text(100, min_length=0, default=None)
    supplier: str = text(200)
    quantity: Decimal = Field(gt=0, max_digits=14, decimal_places=3)
    unit: str = text(20)
    amount_fen: AmountFen
    voucher_ref: str = text(100)
    voucher_file_id: int | None = Field(default=None, ge=1, le=2**62)
    note: str = text(500, min_length=0, default="")

    @field_validator("occurred_on", mode="before")
    @classmethod
    def _date_as_written(cls, value: Any) -> Any:
        # pydantic would read "1764547200" as a Unix time; a voucher date is written out.
        if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            raise ValueError("a date is written YYYY-MM-DD")
        return value

    @field_validator("occurred_on")
    @classmethod
    def _date_in_range(cls, value: date) -> date:
        if value < FIRST_ENTRY_DATE:
            raise ValueError(f"dates before {FIRST_ENTRY_DATE} are not accepted")
        return value

    def to_input(self, voucher_file_id: int | None = None) -> EntryInput:
        """Return the entry as the ledger service takes it, with an uploaded voucher's id."""
        if voucher_file_id is None:
            voucher_file_id = self.voucher_file_id
        return EntryInput(
            channel=ProcurementChannel(self.channel),
            occurred_on=self.occurred_on,
            product_name=self.product_name,
            certificate_number=self.certificate_number,
            county_code=self.county_code,
            county_name=self.county_name,
            supplier=self.supplier,
            quantity=self.quantity,
            unit=self.unit,
            amount_fen=self.amount_fen,
            voucher_ref=self.voucher_ref,
            voucher_file_id=voucher_file_id
            if voucher_file_id is not None
            else self.voucher_file_id,
            note=self.note,
        )


class EntryVoid(RequestModel):
    reason: str = text(500)


class EntryPublic(BaseModel):
    id: int
    school_id: int
    channel: ProcurementChannel
    channel_name: str
    channel_name_en: str
    occurred_on: date
    product_name: str
    certificate_number: str | None
    product_id: int | None
    county_code: str | None
    county_id: int | None
    county_name: str
    supplier: str
    quantity: Decimal
    unit: str
    amount_fen: int
    voucher_ref: str
    voucher_file_id: int | None
    counts: bool
    not_counting_reason: NotCountingReason | None
    not_counting_reason_name: str | None
    not_counting_reason_name_en: str | None
    reported_week: date
    source: str
    note: str
    created_at: datetime
    voided_at: datetime | None
    void_reason: str | None
    voided_in_week: date | None

    @classmethod
    def from_model(cls, entry: ProcurementEntry) -> "EntryPublic":
        reason = entry.not_counting_reason
        channel_zh, channel_en = CHANNEL_NAMES[entry.channel]
        return cls(
            id=entry.id,
            school_id=entry.school_id,
            channel=entry.channel,
            channel_name=channel_zh,
            channel_name_en=channel_en,
            occurred_on=entry.occurred_on,
            product_name=entry.product_name,
            certificate_number=entry.certificate_number,
            product_id=entry.product_id,
            county_code=entry.county_code,
            county_id=entry.county_id,
            county_name=entry.county_name,
            supplier=entry.supplier,
            quantity=entry.quantity,
            unit=entry.unit,
            amount_fen=entry.amount_fen,
            voucher_ref=entry.voucher_ref,
            voucher_file_id=entry.voucher_file_id,
            counts=reason is None and entry.voided_at is None,
            not_counting_reason=reason,
            not_counting_reason_name=REASON_NAMES[reason][0] if reason else None,
            not_counting_reason_name_en=REASON_NAMES[reason][1] if reason else None,
            reported_week=entry.reported_week,
            source=entry.source.value,
            note=entry.note,
            created_at=entry.created_at,
            voided_at=entry.voided_at,
            void_reason=entry.void_reason,
            voided_in_week=entry.voided_in_week,
        )


class ImportResult(BaseModel):
    import_batch: str | None
    created: int
    counting: int
    not_counting: int
    amount_fen: int


class VoucherPublic(BaseModel):
    id: int
    school_id: int
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_at: datetime

    @classmethod
    def from_model(cls, voucher: VoucherFile) -> "VoucherPublic":
        return cls(
            id=voucher.id,
            school_id=voucher.school_id,
            filename=voucher.filename,
            content_type=voucher.content_type,
            size_bytes=voucher.size_bytes,
            sha256=voucher.sha256,
            uploaded_at=voucher.uploaded_at,
        )


# --- Reports ---------------------------------------------------------------------------------


class CountyRow(BaseModel):
    county_code: str
    county_name: str
    period_fen: int
    year_to_date_fen: int
    period_wan: str = Field(description="本期 in 万元, apportioned so the rows add up")
    year_to_date_wan: str


class ChannelRow(BaseModel):
    channel: ProcurementChannel
    channel_name: str
    channel_name_en: str
    period_fen: int
    year_to_date_fen: int
    period_wan: str
    year_to_date_wan: str


class AdjustmentRow(BaseModel):
    occurred_on: date
    channel: ProcurementChannel
    county_code: str
    county_name: str
    counts: bool
    reason: NotCountingReason | None
    amount_fen: int
    amount_wan: str = Field(description="this amount alone in 万元, rounded half up")
    line_count: int


class NotCountingRow(BaseModel):
    reason: NotCountingReason
    reason_name: str
    reason_name_en: str
    channel: ProcurementChannel
    amount_fen: int
    line_count: int


class SchoolSummary(BaseModel):
    id: int
    name: str
    name_en: str | None
    school_type: SchoolType
    city: str


class ReportPublic(BaseModel):
    """A weekly report: amounts in fen, and in 万元 by the report's rounding rule."""

    school: SchoolSummary
    week: date = Field(description="Monday of the week")
    week_end: date = Field(description="Sunday of the week")
    due: date = Field(description="the Tuesday the report is due")
    year_start: date
    status: ReportStatus
    late: bool
    submitted_at: datetime | None
    seen_at: datetime | None
    week_fen: int
    adjustment_fen: int
    period_fen: int = Field(description="本期采购量: the week plus adjustments")
    year_to_date_fen: int = Field(description="累计采购量")
    week_wan: str
    adjustment_wan: str
    period_wan: str
    year_to_date_wan: str
    by_county: list[CountyRow]
    by_channel: list[ChannelRow]
    adjustments: list[AdjustmentRow]
    not_counting: list[NotCountingRow]

    @classmethod
    def from_view(cls, view: ReportView) -> "ReportPublic":
        figures = view.figures
        wan = wan_columns(figures)
        return cls(
            school=summary_of(view),
            week=view.week.monday,
            week_end=view.week.sunday,
            due=view.week.due,
            year_start=date.fromisoformat(figures["year_start"]),
            status=view.status,
            late=view.late,
            submitted_at=view.submitted_at,
            seen_at=view.seen_at,
            week_fen=figures["week_fen"],
            adjustment_fen=figures["adjustment_fen"],
            period_fen=figures["period_fen"],
            year_to_date_fen=figures["year_to_date_fen"],
            week_wan=wan["week"],
            adjustment_wan=wan["adjustment"],
            period_wan=wan["period"],
            year_to_date_wan=wan["year_to_date"],
            by_county=[
                CountyRow(**row, period_wan=shown["period"], year_to_date_wan=shown["year_to_date"])
                for row, shown in zip(figures["by_county"], wan["by_county"], strict=True)
            ],
            by_channel=[
                ChannelRow(
                    **row,
                    channel_name=CHANNEL_NAMES[ProcurementChannel(row["channel"])][0],
                    channel_name_en=CHANNEL_NAMES[ProcurementChannel(row["channel"])][1],
                    period_wan=shown["period"],
                    year_to_date_wan=shown["year_to_date"],
                )
                for row, shown in zip(figures["by_channel"], wan["by_channel"], strict=True)
            ],
            adjustments=[
                AdjustmentRow(
                    occurred_on=date.fromisoformat(row["occurred_on"]),
                    channel=ProcurementChannel(row["channel"]),
                    county_code=row["county_code"],
                    county_name=row["county_name"],
                    counts=row["reason"] is None,
                    reason=NotCountingReason(row["reason"]) if row["reason"] else None,
                    amount_fen=row["amount_fen"],
                    amount_wan=format_wan(wan_yuan(row["amount_fen"])),
                    line_count=row["line_count"],
                )
                for row in figures["adjustments"]
            ],
            not_counting=[
                NotCountingRow(
                    reason=NotCountingReason(row["reason"]),
                    reason_name=REASON_NAMES[NotCountingReason(row["reason"])][0],
                    reason_name_en=REASON_NAMES[NotCountingReason(row["reason"])][1],
                    channel=ProcurementChannel(row["channel"]),
                    amount_fen=row["amount_fen"],
                    line_count=row["line_count"],
                )
                for row in figures["not_counting"]
            ],
        )


def summary_of(view: ReportView) -> SchoolSummary:
    school = view.school
    return SchoolSummary(
        id=school.id,
        name=school.name,
        name_en=school.name_en,
        school_type=school.school_type,
        city=school.city,
    )


class OverviewRow(BaseModel):
    school: SchoolSummary
    status: ReportStatus
    late: bool
    submitted_at: datetime | None
    period_fen: int
    year_to_date_fen: int
    period_wan: str
    year_to_date_wan: str
    rank: int | None = Field(
        default=None, description="rank by 累计 among schools of the same type"
    )

    @classmethod
    def from_view(cls, view: ReportView, rank: int | None = None) -> "OverviewRow":
        return cls(
            school=summary_of(view),
            status=view.status,
            late=view.late,
            submitted_at=view.submitted_at,
            period_fen=view.figures["period_fen"],
            year_to_date_fen=view.figures["year_to_date_fen"],
            period_wan=format_wan(wan_yuan(view.figures["period_fen"])),
            year_to_date_wan=format_wan(wan_yuan(view.figures["year_to_date_fen"])),
            rank=rank,
        )


class Overview(BaseModel):
    week: date
    week_end: date
    due: date
    schools: list[OverviewRow]
    submitted: int
    late: int
    period_fen: int
    year_to_date_fen: int
    period_wan: str
    year_to_date_wan: str


class Rankings(BaseModel):
    week: date
    undergraduate: list[OverviewRow]
    vocational: list[OverviewRow]


class CountyTotal(BaseModel):
    county_code: str
    county_name: str
    period_fen: int
    year_to_date_fen: int
    period_wan: str
    year_to_date_wan: str
    schools: int


class CountyTotals(BaseModel):
    week: date
    counties: list[CountyTotal]
    period_wan: str
    year_to_date_wan: str
