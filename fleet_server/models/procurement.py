"""The procurement ledger (台账), its weekly totals, weekly reports and vouchers.

Cabinet sales are posted to ``procurement_daily_totals`` by ingest; purchases of the other
channels are ``procurement_entries`` entered in a form or imported, and are posted to the
same totals. Reports read only the totals. Every posting carries the reporting week it is
reported in: its own week, or, when that week's report was already submitted, the next
week still open, where it appears as an adjustment.
"""

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet_server.models.base import Base, BigIntId, CreatedAt, JSONDocument, UTCDateTime
from fleet_server.models.counties import County
from fleet_server.models.enums import enum_type
from fleet_server.models.products import Product


class ProcurementChannel(enum.StrEnum):
    """采购渠道: how the school bought the goods."""

    CABINET = "cabinet"  # 智能专柜, posted by ingest
    CANTEEN = "canteen"  # 食堂
    UNION_WELFARE = "union_welfare"  # 工会福利
    CAMPUS_SHOP = "campus_shop"  # 校内超市 / 扶贫窗口
    SERVICE_COMPANY = "service_company"  # 后勤服务企业


class NotCountingReason(enum.StrEnum):
    """Reason that an entry or a cabinet sale line does not count toward the procurement total."""

    NOT_CERTIFIED = "not_certified"  # no certificate, or one the catalog does not know
    CERTIFICATE_NOT_VALID = "certificate_not_valid"  # outside the certificate's validity dates
    NOT_POVERTY_COUNTY = "not_poverty_county"  # source county is not a poverty county
    COUNTY_MISMATCH = "county_mismatch"  # entered county differs from the certified one
    NOT_PAID = "not_paid"  # a cabinet sale line that the payment did not cover


class EntrySource(enum.StrEnum):
    FORM = "form"
    IMPORT = "import"


class ReportStatus(enum.StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    SEEN = "seen"  # the province has looked at the submitted report


class VoucherFile(Base):
    """An uploaded scan or photo of an invoice or receipt (凭证)."""

    __tablename__ = "voucher_files"
    __table_args__ = (CheckConstraint("size_bytes > 0", name="size_bytes_positive"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # Lists a school's vouchers.
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), index=True)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(Integer())
    sha256: Mapped[str] = mapped_column(String(64))
    # Kept in the database, so that a database backup contains the vouchers too.
    content: Mapped[bytes] = mapped_column(LargeBinary())
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[CreatedAt]


class ProcurementEntry(Base):
    """One purchase of a channel other than the cabinets, as the school entered it."""

    __tablename__ = "procurement_entries"
    __table_args__ = (
        # A school's ledger, by date.
        Index("ix_procurement_entries_school_id_occurred_on", "school_id", "occurred_on"),
        CheckConstraint("amount_fen > 0", name="amount_fen_positive"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("channel <> 'cabinet'", name="not_cabinet_channel"),
        CheckConstraint("(voided_at IS NULL) = (void_reason IS NULL)", name="void_has_reason"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    channel: Mapped[ProcurementChannel] = mapped_column(
        enum_type(ProcurementChannel, "procurement_channel")
    )
    # Date of the purchase in Asia/Shanghai, as on the voucher.
    occurred_on: Mapped[date] = mapped_column(Date())
    product_name: Mapped[str] = mapped_column(String(200))
    # 认定编号 as entered; product_id is the catalog product it names, if any.
    certificate_number: Mapped[str | None] = mapped_column(String(64))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))
    # Division code as entered, and the poverty county it resolves to (old codes included).
    county_code: Mapped[str | None] = mapped_column(String(6))
    county_id: Mapped[int | None] = mapped_column(ForeignKey("counties.id"))
    # County name as entered, or the catalog's name of county_id.
    county_name: Mapped[str] = mapped_column(String(100))
    supplier: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[Decimal] = mapped_column(Numeric(14, 3))
    unit: Mapped[str] = mapped_column(String(20))
    amount_fen: Mapped[int] = mapped_column(BigInteger())
    voucher_ref: Mapped[str] = mapped_column(String(100))
    voucher_file_id: Mapped[int | None] = mapped_column(ForeignKey("voucher_files.id"))
    # None when the entry counts.
    not_counting_reason: Mapped[NotCountingReason | None] = mapped_column(
        enum_type(NotCountingReason, "not_counting_reason")
    )
    # Monday of the report that carries the entry (later than its own week when late).
    reported_week: Mapped[date] = mapped_column(Date())
    source: Mapped[EntrySource] = mapped_column(enum_type(EntrySource, "entry_source"))
    # All rows of one file import share the batch id.
    import_batch: Mapped[str | None] = mapped_column(String(36), index=True)
    note: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[CreatedAt]
    # An entry is never deleted; voiding posts its amount back out, as an adjustment when
    # its week was already submitted.
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    void_reason: Mapped[str | None] = mapped_column(String(500))
    voided_in_week: Mapped[date | None] = mapped_column(Date())

    product: Mapped[Product | None] = relationship()
    county: Mapped[County | None] = relationship()
    voucher_file: Mapped[VoucherFile | None] = relationship()


class ProcurementDailyTotal(Base):
    """Sum of the postings of one school, day, channel, county and counting state.

    ``reason`` is "" for amounts that count and a NotCountingReason value otherwise;
    ``county_code`` is the county's current division code, the code as entered for a county
    that is not a poverty county, or "" when unknown. Amounts are signed: a refund or a
    voided entry posts a negative amount.
    """

    __tablename__ = "procurement_daily_totals"
    __table_args__ = (
        # The upsert key of every posting; its leading columns serve a report's queries
        # ("WHERE school_id = ? AND reported_week <= ?").
        UniqueConstraint(
            "school_id", "reported_week", "occurred_on", "channel", "county_code", "reason"
        ),
        # The province's queries over every school for one report week.
        Index("ix_procurement_daily_totals_reported_week", "reported_week"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    reported_week: Mapped[date] = mapped_column(Date())
    occurred_on: Mapped[date] = mapped_column(Date())
    channel: Mapped[ProcurementChannel] = mapped_column(
        enum_type(ProcurementChannel, "procurement_channel")
    )
    county_code: Mapped[str] = mapped_column(String(6))
    reason: Mapped[str] = mapped_column(String(32))
    amount_fen: Mapped[int] = mapped_column(BigInteger())
    # Sale lines or entries posted (negative postings subtract).
    line_count: Mapped[int] = mapped_column(Integer())


class ProcurementReport(Base):
    """A school's weekly report once it left the draft state, with its frozen figures."""

    __tablename__ = "procurement_reports"
    __table_args__ = (
        UniqueConstraint("school_id", "week"),
        # The province's overview of one week.
        Index("ix_procurement_reports_week", "week"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    # Monday of the reporting week.
    week: Mapped[date] = mapped_column(Date())
    status: Mapped[ReportStatus] = mapped_column(enum_type(ReportStatus, "report_status"))
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    submitted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    seen_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The report as submitted (amounts in fen); it never changes afterwards.
    figures: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
