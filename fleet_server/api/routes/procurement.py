"""The procurement ledger, weekly reports and the province's weekly overview."""

import re
from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, File, Query, Response, UploadFile, status
from sqlalchemy.orm import Session

from fleet_server.api.deps import (
    PageLimit,
    PageOffset,
    ProvinceAdminActor,
    SchoolManagerActor,
    SessionDep,
    SettingsDep,
)
from fleet_server.api.errors import error_responses
from fleet_server.core.config import ServerSettings
from fleet_server.models import EntrySource, ProcurementChannel, SchoolType
from fleet_server.reporting.export import province_workbook, report_csv, report_workbook
from fleet_server.reporting.wan_yuan import apportion, format_wan, wan_yuan
from fleet_server.schemas.common import Page
from fleet_server.schemas.procurement import (
    CountyTotal,
    CountyTotals,
    EntryCreate,
    EntryPublic,
    EntryVoid,
    ImportResult,
    Overview,
    OverviewRow,
    Rankings,
    ReportPublic,
    VoucherPublic,
)
from fleet_server.services import procurement_import as importing
from fleet_server.services import procurement_ledger as ledger
from fleet_server.services import procurement_reports as reports
from fleet_server.services.access import Actor
from fleet_server.services.errors import InvalidInputError
from fleet_server.services.pagination import DEFAULT_PAGE_LIMIT

router = APIRouter(tags=["procurement"])

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {XLSX: {}, "text/csv": {}}, "description": "the file"},
}


def attachment(content: bytes, media_type: str, filename: str) -> Response:
    """Return a download named as RFC 6266 specifies, safe in any header."""
    # An ASCII fallback of letters, digits and ._- only, and the UTF-8 name percent-encoded
    # for browsers that read filename*; names come from users and may hold any character.
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return Response(
        content,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{fallback}"; '
            f"filename*=UTF-8''{quote(filename, safe='')}"
        },
    )


async def _read_upload(upload: UploadFile, limit: int) -> bytes:
    """Read at most ``limit`` + 1 bytes, so an oversized upload is refused without keeping it."""
    content = await upload.read(limit + 1)
    if len(content) > limit:
        raise InvalidInputError(
            code="file_too_large",
            message=f"文件不能超过 {limit // (1024 * 1024)} MB",
            message_en=f"The file may not exceed {limit // (1024 * 1024)} MB",
            details={"field": "file"},
        )
    return content


# --- Ledger ----------------------------------------------------------------------------------


@router.get(
    "/schools/{school_id}/procurement/entries", responses=error_responses(401, 403, 404, 422)
)
def list_entries(
    session: SessionDep,
    actor: SchoolManagerActor,
    school_id: int,
    start: date | None = None,
    end: date | None = None,
    channel: ProcurementChannel | None = None,
    counting: bool | None = None,
    limit: PageLimit = DEFAULT_PAGE_LIMIT,
    offset: PageOffset = 0,
) -> Page[EntryPublic]:
    """List a school's ledger entries of the channels other than the cabinets."""
    page = ledger.list_entries(
        session,
        actor=actor,
        school_id=school_id,
        limit=limit,
        offset=offset,
        start=start,
        end=end,
        channel=channel,
        counting=counting,
    )
    return Page[EntryPublic](
        items=[EntryPublic.from_model(entry) for entry in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post(
    "/schools/{school_id}/procurement/entries",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 401, 403, 404, 422),
)
def create_entry(
    session: SessionDep, actor: SchoolManagerActor, school_id: int, body: EntryCreate
) -> EntryPublic:
    """Enter one purchase. The response shows whether it counts, and the reason if not."""
    (entry,) = ledger.add_entries(
        session,
        actor=actor,
        school_id=school_id,
        entries=[body.to_input()],
        source=EntrySource.FORM,
    )
    session.commit()
    return EntryPublic.from_model(entry)


@router.post(
    "/schools/{school_id}/procurement/entries/{entry_id}/void",
    responses=error_responses(400, 401, 403, 404, 422),
)
def void_entry(
    session: SessionDep, actor: SchoolManagerActor, school_id: int, entry_id: int, body: EntryVoid
) -> EntryPublic:
    """Void a wrong entry. It stays in the ledger, marked void, and leaves the totals."""
    entry = ledger.void_entry(
        session, actor=actor, school_id=school_id, entry_id=entry_id, reason=body.reason
    )
    session.commit()
    return EntryPublic.from_model(entry)


@router.post(
    "/schools/{school_id}/procurement/imports",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 401, 403, 404, 422),
)
async def import_entries(
    session: SessionDep,
    actor: SchoolManagerActor,
    school_id: int,
    file: Annotated[UploadFile, File(description="CSV (UTF-8 or GBK) or .xlsx, as the template")],
) -> ImportResult:
    """Import ledger entries from a file: every row is checked, and all or none are saved."""
    content = await _read_upload(file, importing.MAX_IMPORT_BYTES)
    ledger.check_ledger_access(session, actor, school_id)
    entries = importing.parse_entries(content)
    saved = ledger.add_entries(
        session, actor=actor, school_id=school_id, entries=entries, source=EntrySource.IMPORT
    )
    session.commit()
    counting = [entry for entry in saved if entry.not_counting_reason is None]
    return ImportResult(
        import_batch=saved[0].import_batch if saved else None,
        created=len(saved),
        counting=len(counting),
        not_counting=len(saved) - len(counting),
        amount_fen=sum(entry.amount_fen for entry in saved),
    )


@router.get(
    "/procurement/import-template",
    responses={**FILE_RESPONSES, **error_responses(401, 403)},
    response_class=Response,
)
def import_template(actor: SchoolManagerActor) -> Response:
    """Download the Excel template for ledger imports, with Chinese headers."""
    return attachment(importing.template_workbook(), XLSX, "台账导入模板.xlsx")


@router.post(
    "/schools/{school_id}/procurement/vouchers",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 401, 403, 404, 422),
)
async def upload_voucher(
    session: SessionDep,
    actor: SchoolManagerActor,
    school_id: int,
    file: Annotated[UploadFile, File(description="PDF, JPEG or PNG, at most 10 MB")],
) -> VoucherPublic:
    """Upload the scan of an invoice or receipt; entries refer to it by its id."""
    content = await _read_upload(file, ledger.MAX_VOUCHER_BYTES)
    voucher = ledger.store_voucher(
        session, actor=actor, school_id=school_id, filename=file.filename or "", content=content
    )
    session.commit()
    return VoucherPublic.from_model(voucher)


@router.get(
    "/schools/{school_id}/procurement/vouchers/{voucher_id}",
    responses={
        200: {"content": {"application/pdf": {}, "image/jpeg": {}, "image/png": {}}},
        **error_responses(401, 403, 404, 422),
    },
    response_class=Response,
)
def download_voucher(
    session: SessionDep, actor: SchoolManagerActor, school_id: int, voucher_id: int
) -> Response:
    voucher = ledger.get_voucher(session, actor=actor, school_id=school_id, voucher_id=voucher_id)
    return attachment(voucher.content, voucher.content_type, voucher.filename)


# --- One school's weekly report ------------------------------------------------------------------


def _report(
    session: Session, actor: Actor, settings: ServerSettings, school_id: int, week: date
) -> ReportPublic:
    view = reports.get_report(
        session,
        actor=actor,
        school_id=school_id,
        week=reports.parse_week(week),
        year=reports.YearStart.from_settings(settings),
    )
    return ReportPublic.from_view(view)


@router.get(
    "/schools/{school_id}/procurement/reports/{week}",
    responses=error_responses(400, 401, 403, 404, 422),
)
def get_report(
    session: SessionDep,
    settings: SettingsDep,
    actor: SchoolManagerActor,
    school_id: int,
    week: date,
) -> ReportPublic:
    """Return the report of the week starting on Monday ``week``: the draft, or as submitted."""
    return _report(session, actor, settings, school_id, week)


@router.get(
    "/schools/{school_id}/procurement/reports/{week}/export",
    responses={**FILE_RESPONSES, **error_responses(400, 401, 403, 404, 422)},
    response_class=Response,
)
def export_report(
    session: SessionDep,
    settings: SettingsDep,
    actor: SchoolManagerActor,
    school_id: int,
    week: date,
    format: Literal["xlsx", "csv"] = "xlsx",
) -> Response:
    """Download the weekly report as Excel (the form's layout) or CSV."""
    report = _report(session, actor, settings, school_id, week)
    name = f"{report.school.name}_采购信息表_{report.week}"
    if format == "csv":
        return attachment(report_csv(report), "text/csv; charset=utf-8", f"{name}.csv")
    return attachment(report_workbook(report), XLSX, f"{name}.xlsx")


@router.get(
    "/schools/{school_id}/procurement/reports/{week}/late-entries",
    responses=error_responses(400, 401, 403, 404, 422),
)
def list_late_entries(
    session: SessionDep, actor: SchoolManagerActor, school_id: int, week: date
) -> list[EntryPublic]:
    """Ledger entries that this report carries as adjustments, with their original dates."""
    ledger.check_ledger_access(session, actor, school_id)
    return [
        EntryPublic.from_model(entry)
        for entry in reports.late_entries(
            session, school_id=school_id, week=reports.parse_week(week)
        )
    ]


@router.post(
    "/schools/{school_id}/procurement/reports/{week}/submit",
    responses=error_responses(400, 401, 403, 404, 422),
)
def submit_report(
    session: SessionDep,
    settings: SettingsDep,
    actor: SchoolManagerActor,
    school_id: int,
    week: date,
) -> ReportPublic:
    """Submit the week's report to the province; its figures are frozen from now on."""
    view = reports.submit_report(
        session,
        actor=actor,
        school_id=school_id,
        week=reports.parse_week(week),
        year=reports.YearStart.from_settings(settings),
    )
    session.commit()
    return ReportPublic.from_view(view)


@router.post(
    "/schools/{school_id}/procurement/reports/{week}/seen",
    responses=error_responses(400, 401, 403, 404, 422),
)
def mark_report_seen(
    session: SessionDep,
    settings: SettingsDep,
    actor: ProvinceAdminActor,
    school_id: int,
    week: date,
) -> ReportPublic:
    """Mark a submitted report as read by the province."""
    reports.mark_seen(session, actor=actor, school_id=school_id, week=reports.parse_week(week))
    session.commit()
    return _report(session, actor, settings, school_id, week)


# --- The province's week -------------------------------------------------------------------------


def week_overview(
    session: Session,
    actor: Actor,
    settings: ServerSettings,
    week: date,
    school_type: SchoolType | None = None,
    late_only: bool = False,
) -> tuple[Overview, list[reports.ReportView]]:
    report_week = reports.parse_week(week)
    views = reports.province_overview(
        session,
        actor=actor,
        week=report_week,
        year=reports.YearStart.from_settings(settings),
        school_type=school_type,
    )
    shown = (
        [view for view in views if view.late and view.status.value == "draft"]
        if late_only
        else views
    )
    period_fen = sum(view.figures["period_fen"] for view in shown)
    year_fen = sum(view.figures["year_to_date_fen"] for view in shown)
    overview = Overview(
        week=report_week.monday,
        week_end=report_week.sunday,
        due=report_week.due,
        schools=[OverviewRow.from_view(view) for view in shown],
        submitted=sum(1 for view in views if view.status.value != "draft"),
        late=sum(1 for view in views if view.late),
        period_fen=period_fen,
        year_to_date_fen=year_fen,
        period_wan=format_wan(wan_yuan(period_fen)),
        year_to_date_wan=format_wan(wan_yuan(year_fen)),
    )
    return overview, views


def week_rankings(week: date, views: list[reports.ReportView]) -> Rankings:
    ranked = reports.rankings(views)
    rows = {
        kind: [OverviewRow.from_view(view, rank) for rank, view in enumerate(ranked[kind], 1)]
        for kind in ranked
    }
    return Rankings(
        week=week,
        undergraduate=rows[SchoolType.UNDERGRADUATE],
        vocational=rows[SchoolType.VOCATIONAL],
    )


def week_county_totals(week: date, views: list[reports.ReportView]) -> CountyTotals:
    rows = reports.county_totals(views)
    period, period_total = apportion([row["period_fen"] for row in rows])
    year, year_total = apportion([row["year_to_date_fen"] for row in rows])
    return CountyTotals(
        week=week,
        counties=[
            CountyTotal(**row, period_wan=format_wan(p), year_to_date_wan=format_wan(y))
            for row, p, y in zip(rows, period, year, strict=True)
        ],
        period_wan=format_wan(period_total),
        year_to_date_wan=format_wan(year_total),
    )


@router.get("/procurement/weeks/{week}", responses=error_responses(400, 401, 403, 422))
def province_week(
    session: SessionDep,
    settings: SettingsDep,
    actor: ProvinceAdminActor,
    week: date,
    school_type: SchoolType | None = None,
    late_only: Annotated[
        bool, Query(description="only the schools that have not submitted by the deadline")
    ] = False,
) -> Overview:
    """List every school's report of the week, submitted or draft, with the late ones marked."""
    overview, _ = week_overview(session, actor, settings, week, school_type, late_only)
    return overview


@router.get("/procurement/weeks/{week}/rankings", responses=error_responses(400, 401, 403, 422))
def province_rankings(
    session: SessionDep, settings: SettingsDep, actor: ProvinceAdminActor, week: date
) -> Rankings:
    """Schools ranked by 累计采购量, 本科 and 高职 apart."""
    overview, views = week_overview(session, actor, settings, week)
    return week_rankings(overview.week, views)


@router.get("/procurement/weeks/{week}/counties", responses=error_responses(400, 401, 403, 422))
def province_counties(
    session: SessionDep, settings: SettingsDep, actor: ProvinceAdminActor, week: date
) -> CountyTotals:
    """Procurement by source county over every school."""
    overview, views = week_overview(session, actor, settings, week)
    return week_county_totals(overview.week, views)


@router.get(
    "/procurement/weeks/{week}/export",
    responses={**FILE_RESPONSES, **error_responses(400, 401, 403, 422)},
    response_class=Response,
)
def export_province_week(
    session: SessionDep, settings: SettingsDep, actor: ProvinceAdminActor, week: date
) -> Response:
    """Download the province's week as Excel: schools, rankings, counties."""
    overview, views = week_overview(session, actor, settings, week)
    content = province_workbook(
        overview, week_rankings(overview.week, views), week_county_totals(overview.week, views)
    )
    return attachment(content, XLSX, f"全省面向采购周报_{overview.week}.xlsx")
