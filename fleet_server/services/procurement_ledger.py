"""A school's procurement ledger (台账): entries of the channels other than the cabinets.

An entry is checked against the catalog when it is saved: only a certified product from a
poverty county, bought within the certificate's validity, counts. Anything else is kept
with the reason it does not count. Entries are never edited or deleted; a wrong entry is
voided (with a reason) and entered again, and both steps are in the audit log. A void of
an entry whose week was submitted reaches the next report as a negative adjustment.
"""

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from fleet_server.models import (
    County,
    CountyCode,
    EntrySource,
    NotCountingReason,
    ProcurementChannel,
    ProcurementEntry,
    Product,
    Role,
    School,
    VoucherFile,
)
from fleet_server.models.base import utc_now
from fleet_server.reporting.periods import local_date
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit
from fleet_server.services.errors import InvalidInputError, NotFoundError
from fleet_server.services.pagination import PageResult, fetch_page
from fleet_server.services.procurement_posting import (
    COUNTS,
    Posting,
    last_submitted_weeks,
    lock_ledgers,
    post,
    report_week_for,
)

MAX_VOUCHER_BYTES = 10 * 1024 * 1024
# File signatures of the voucher formats accepted: scans and photos.
VOUCHER_SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)

ENTRY_AUDIT_FIELDS = (
    "channel",
    "occurred_on",
    "product_name",
    "certificate_number",
    "county_code",
    "county_name",
    "supplier",
    "quantity",
    "unit",
    "amount_fen",
    "voucher_ref",
    "voucher_file_id",
    "not_counting_reason",
    "reported_week",
)


@dataclass(frozen=True)
class EntryInput:
    """One purchase as a school administrator enters or imports it."""

    channel: ProcurementChannel
    occurred_on: date
    product_name: str
    certificate_number: str | None
    county_code: str | None
    county_name: str | None
    supplier: str
    quantity: Decimal
    unit: str
    amount_fen: int
    voucher_ref: str
    voucher_file_id: int | None = None
    note: str = ""


@dataclass(frozen=True)
class Classification:
    product_id: int | None
    county_id: int | None
    county_code: str | None
    county_name: str
    reason: NotCountingReason | None

    @property
    def posting_county_code(self) -> str:
        return self.county_code or ""


def check_ledger_access(session: Session, actor: Actor, school_id: int) -> School:
    """Return the school if the actor may keep its ledger, else raise NotFoundError.

    A school administrator keeps the ledger of their own school; the province reads and
    corrects every ledger. To anyone else a ledger does not exist.
    """
    school = session.get(School, school_id)
    own_school = actor.role is Role.SCHOOL_ADMIN and actor.school_id == school_id
    if school is None or not (actor.sees_everything or own_school):
        raise NotFoundError("school", school_id)
    return school


def classify(session: Session, entry: EntryInput) -> Classification:
    """Decide whether the entry counts, and resolve its product and county."""
    product = (
        session.scalar(
            select(Product).where(Product.certificate_number == entry.certificate_number)
        )
        if entry.certificate_number
        else None
    )
    county: County | None = None
    entered_code = entry.county_code or None
    if entered_code is not None:
        code_row = session.get(CountyCode, entered_code)
        county = code_row.county if code_row is not None else None
    elif product is not None:
        county = product.source_county

    if county is not None:
        county_code: str | None = county.current_code
        county_name = county.name
    else:
        county_code = entered_code
        county_name = (entry.county_name or "").strip() or (entered_code or "")

    reason: NotCountingReason | None = None
    if product is None:
        reason = NotCountingReason.NOT_CERTIFIED
    elif county is None:
        reason = NotCountingReason.NOT_POVERTY_COUNTY
    elif not product.valid_from <= entry.occurred_on <= product.valid_until:
        reason = NotCountingReason.CERTIFICATE_NOT_VALID
    elif county.id != product.source_county_id:
        reason = NotCountingReason.COUNTY_MISMATCH
    return Classification(
        product_id=product.id if product is not None else None,
        county_id=county.id if county is not None else None,
        county_code=county_code,
        county_name=county_name,
        reason=reason,
    )


def _check_entry(session: Session, school_id: int, entry: EntryInput, today: date) -> None:
    if entry.channel is ProcurementChannel.CABINET:
        raise InvalidInputError(
            code="cabinet_channel_is_automatic",
            message="智能专柜的销售由系统自动记入台账，不能手工录入",
            message_en="Cabinet sales are posted automatically and cannot be entered by hand",
            details={"field": "channel"},
        )
    if entry.occurred_on > today:
        raise InvalidInputError(
            code="date_in_future",
            message=f"采购日期 {entry.occurred_on} 晚于今天",
            message_en=f"The purchase date {entry.occurred_on} is after today",
            details={"field": "occurred_on"},
        )
    if not entry.certificate_number and not entry.county_code and not entry.county_name:
        raise InvalidInputError(
            code="county_required",
            message="请填写产品来源县（区划代码或名称），或填写认定编号",
            message_en="Give the source county (division code or name) or a certificate number",
            details={"field": "county_code"},
        )
    if entry.voucher_file_id is not None:
        voucher = session.get(VoucherFile, entry.voucher_file_id)
        if voucher is None or voucher.school_id != school_id:
            raise InvalidInputError(
                code="voucher_file_not_found",
                message=f"凭证文件 {entry.voucher_file_id} 不存在",
                message_en=f"Voucher file {entry.voucher_file_id} does not exist",
                details={"field": "voucher_file_id"},
            )


def add_entries(
    session: Session,
    *,
    actor: Actor,
    school_id: int,
    entries: Sequence[EntryInput],
    source: EntrySource,
    now: datetime | None = None,
) -> list[ProcurementEntry]:
    """Add entries to a school's ledger and post them; all or none.

    Raises InvalidInputError for the first entry that cannot be saved.
    """
    check_ledger_access(session, actor, school_id)
    today = local_date(now or utc_now())
    for entry in entries:
        _check_entry(session, school_id, entry, today)

    lock_ledgers(session, [school_id], exclusive=False)
    last_submitted = last_submitted_weeks(session, [school_id]).get(school_id)
    batch = str(uuid.uuid4()) if source is EntrySource.IMPORT else None
    saved = []
    postings = []
    for entry in entries:
        verdict = classify(session, entry)
        row = ProcurementEntry(
            school_id=school_id,
            channel=entry.channel,
            occurred_on=entry.occurred_on,
            product_name=entry.product_name,
            certificate_number=entry.certificate_number or None,
            product_id=verdict.product_id,
            county_code=entry.county_code or verdict.county_code,
            county_id=verdict.county_id,
            county_name=verdict.county_name,
            supplier=entry.supplier,
            quantity=entry.quantity,
            unit=entry.unit,
            amount_fen=entry.amount_fen,
            voucher_ref=entry.voucher_ref,
            voucher_file_id=entry.voucher_file_id,
            not_counting_reason=verdict.reason,
            reported_week=report_week_for(entry.occurred_on, last_submitted),
            source=source,
            import_batch=batch,
            note=entry.note,
            created_by=actor.user_id,
        )
        session.add(row)
        saved.append(row)
        postings.append(
            Posting(
                school_id,
                entry.occurred_on,
                entry.channel,
                verdict.posting_county_code,
                verdict.reason.value if verdict.reason else COUNTS,
                entry.amount_fen,
                1,
            )
        )
    session.flush()
    post(session, postings)
    for row in saved:
        record_audit(
            session,
            actor=actor,
            action="ledger.entry.create" if batch is None else "ledger.entry.import",
            object_type="procurement_entry",
            object_id=row.id,
            after={field: getattr(row, field) for field in ENTRY_AUDIT_FIELDS}
            | ({"import_batch": batch} if batch else {}),
        )
    return saved


def void_entry(
    session: Session, *, actor: Actor, school_id: int, entry_id: int, reason: str
) -> ProcurementEntry:
    """Void an entry: its amount leaves the totals, as an adjustment if already reported."""
    check_ledger_access(session, actor, school_id)
    lock_ledgers(session, [school_id], exclusive=False)
    entry = session.scalars(
        select(ProcurementEntry)
        .where(ProcurementEntry.id == entry_id, ProcurementEntry.school_id == school_id)
        .with_for_update()
    ).one_or_none()
    if entry is None:
        raise NotFoundError("procurement_entry", entry_id)
    if entry.voided_at is not None:
        raise InvalidInputError(
            code="entry_already_voided",
            message=f"台账记录 {entry_id} 已作废",
            message_en=f"Ledger entry {entry_id} is already void",
        )
    last_submitted = last_submitted_weeks(session, [school_id]).get(school_id)
    entry.voided_at = utc_now()
    entry.void_reason = reason
    entry.voided_in_week = report_week_for(entry.occurred_on, last_submitted)
    post(
        session,
        [
            Posting(
                school_id,
                entry.occurred_on,
                entry.channel,
                _posting_code(session, entry),
                entry.not_counting_reason.value if entry.not_counting_reason else COUNTS,
                -entry.amount_fen,
                -1,
            )
        ],
    )
    record_audit(
        session,
        actor=actor,
        action="ledger.entry.void",
        object_type="procurement_entry",
        object_id=entry.id,
        before={"voided_at": None},
        after={
            "voided_at": entry.voided_at,
            "void_reason": reason,
            "voided_in_week": entry.voided_in_week,
        },
    )
    return entry


def _posting_code(session: Session, entry: ProcurementEntry) -> str:
    """Return the county key the entry was posted under."""
    if entry.county_id is not None:
        county = session.get(County, entry.county_id)
        assert county is not None
        return county.current_code
    return entry.county_code or ""


def list_entries(
    session: Session,
    *,
    actor: Actor,
    school_id: int,
    limit: int,
    offset: int,
    start: date | None = None,
    end: date | None = None,
    channel: ProcurementChannel | None = None,
    counting: bool | None = None,
) -> PageResult[ProcurementEntry]:
    """Return a page of a school's ledger entries, newest purchase first."""
    check_ledger_access(session, actor, school_id)
    statement: Select[ProcurementEntry] = select(ProcurementEntry).where(
        ProcurementEntry.school_id == school_id
    )
    if start is not None:
        statement = statement.where(ProcurementEntry.occurred_on >= start)
    if end is not None:
        statement = statement.where(ProcurementEntry.occurred_on <= end)
    if channel is not None:
        statement = statement.where(ProcurementEntry.channel == channel)
    if counting is True:
        statement = statement.where(ProcurementEntry.not_counting_reason.is_(None))
    elif counting is False:
        statement = statement.where(ProcurementEntry.not_counting_reason.is_not(None))
    return fetch_page(
        session,
        statement.order_by(ProcurementEntry.occurred_on.desc(), ProcurementEntry.id.desc()),
        limit=limit,
        offset=offset,
    )


# --- Vouchers -------------------------------------------------------------------------------


def sniff_voucher_type(content: bytes) -> str | None:
    """Return the content type that the file's first bytes show, or None if not accepted."""
    for signature, content_type in VOUCHER_SIGNATURES:
        if content.startswith(signature):
            return content_type
    return None


def store_voucher(
    session: Session, *, actor: Actor, school_id: int, filename: str, content: bytes
) -> VoucherFile:
    check_ledger_access(session, actor, school_id)
    if not content:
        raise InvalidInputError(
            code="voucher_empty",
            message="凭证文件是空的",
            message_en="The voucher file is empty",
            details={"field": "file"},
        )
    if len(content) > MAX_VOUCHER_BYTES:
        raise InvalidInputError(
            code="voucher_too_large",
            message=f"凭证文件不能超过 {MAX_VOUCHER_BYTES // (1024 * 1024)} MB",
            message_en=f"A voucher file may not exceed {MAX_VOUCHER_BYTES // (1024 * 1024)} MB",
            details={"field": "file"},
        )
    content_type = sniff_voucher_type(content)
    if content_type is None:
        raise InvalidInputError(
            code="voucher_type_not_accepted",
            message="凭证文件须为 PDF、JPEG 或 PNG",
            message_en="A voucher must be a PDF, JPEG or PNG file",
            details={"field": "file"},
        )
    voucher = VoucherFile(
        school_id=school_id,
        filename=(filename or "voucher").replace("\x00", "")[:200] or "voucher",
        content_type=content_type,
        size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
        uploaded_by=actor.user_id,
    )
    session.add(voucher)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="ledger.voucher.upload",
        object_type="voucher_file",
        object_id=voucher.id,
        after={"filename": voucher.filename, "sha256": voucher.sha256, "size": len(content)},
    )
    return voucher


def get_voucher(session: Session, *, actor: Actor, school_id: int, voucher_id: int) -> VoucherFile:
    check_ledger_access(session, actor, school_id)
    voucher = session.get(VoucherFile, voucher_id)
    if voucher is None or voucher.school_id != school_id:
        raise NotFoundError("voucher_file", voucher_id)
    return voucher
