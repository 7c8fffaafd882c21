"""Weekly reports as Excel workbooks (Chinese headers) and CSV files.

The 万元 cells hold the same figures as the API (the rows apportioned to the rounded
total), as numbers with two decimals; the yuan cells hold the exact amounts. CSV files
are UTF-8 with a byte order mark, which Excel needs to read Chinese text.
"""

import csv
import io
from collections.abc import Sequence
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from fleet_server.schemas.planning import ProvincePlans, Recommendation
from fleet_server.schemas.procurement import (
    CHANNEL_NAMES,
    REASON_NAMES,
    CountyTotals,
    Overview,
    OverviewRow,
    Rankings,
    ReportPublic,
)

SCHOOL_TYPE_NAMES = {"undergraduate": "本科", "vocational": "高职"}
STATUS_NAMES = {"draft": "草稿（未报送）", "submitted": "已报送", "seen": "省级已签收"}
WAN_FORMAT = "0.00"
YUAN_FORMAT = "#,##0.00"
TITLE_FONT = Font(bold=True, size=14)
HEADER_FONT = Font(bold=True)


def _wan(text: str) -> Decimal:
    return Decimal(text)


def _yuan(fen: int) -> Decimal:
    return Decimal(fen) / 100


def _append(sheet: Worksheet, row: Sequence[object]) -> None:
    """Append a row of values, never of formulas, without characters the format cannot hold.

    Names come from users: a stray control character must not make a download fail, and
    a name such as =HYPERLINK(...) must stay text instead of becoming a live formula
    (openpyxl stores every string that starts with "=" as a formula).
    """
    sheet.append(
        [ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value for value in row]
    )
    for cell in sheet[sheet.max_row]:
        if cell.data_type == "f":
            cell.data_type = "s"


def _csv_text(value: str) -> str:
    """Return a user's text for a CSV cell that spreadsheets will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _header(sheet: Worksheet, headers: Sequence[str]) -> None:
    _append(sheet, list(headers))
    for cell in sheet[sheet.max_row]:
        cell.font = HEADER_FONT
        cell.alignment = Alignment(horizontal="center", wrap_text=True)


def _format_row(sheet: Worksheet, formats: dict[int, str]) -> None:
    for column, number_format in formats.items():
        sheet.cell(row=sheet.max_row, column=column).number_format = number_format


def _widths(sheet: Worksheet, widths: Sequence[int]) -> None:
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width


def _save(workbook: Workbook) -> bytes:
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def report_workbook(report: ReportPublic) -> bytes:
    """Return one school's weekly report (采购信息表) as an .xlsx file."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "采购信息表"
    school = report.school
    _append(sheet, [f"{school.name} 面向采购和消费扶贫采购信息表"])
    sheet["A1"].font = TITLE_FONT
    _append(sheet, [f"统计周期：{report.week} 至 {report.week_end}；报送截止：{report.due}"])
    status = STATUS_NAMES[report.status.value]
    submitted = f"；报送时间：{report.submitted_at:%Y-%m-%d %H:%M}" if report.submitted_at else ""
    _append(sheet, [f"状态：{status}{submitted}；金额单位：万元（两位小数，四舍五入）"])
    _append(sheet, [])

    counties = "、".join(row.county_name for row in report.by_county) or "—"
    cabinet = next((row for row in report.by_channel if row.channel.value == "cabinet"), None)
    _header(
        sheet,
        [
            "序号",
            "学校名称",
            "学校类别",
            "统计周期（起）",
            "统计周期（止）",
            "本期采购量（万元）",
            "累计采购量（万元）",
            "其中消费扶贫专柜销售（本期，万元）",
            "其中往期调整（万元）",
            "产品来源（县/区）",
            "备注",
        ],
    )
    _append(
        sheet,
        [
            1,
            school.name,
            SCHOOL_TYPE_NAMES[school.school_type.value],
            report.week,
            report.week_end,
            _wan(report.period_wan),
            _wan(report.year_to_date_wan),
            _wan(cabinet.period_wan) if cabinet else Decimal("0.00"),
            _wan(report.adjustment_wan),
            counties,
            f"累计自 {report.year_start} 起",
        ],
    )
    _format_row(
        sheet,
        {
            4: "yyyy-mm-dd",
            5: "yyyy-mm-dd",
            6: WAN_FORMAT,
            7: WAN_FORMAT,
            8: WAN_FORMAT,
            9: WAN_FORMAT,
        },
    )
    _append(sheet, [])

    _append(sheet, ["按产品来源县"])
    sheet.cell(row=sheet.max_row, column=1).font = HEADER_FONT
    _header(
        sheet,
        [
            "序号",
            "产品来源（县/区）",
            "区划代码",
            "本期采购量（万元）",
            "累计采购量（万元）",
            "本期金额（元）",
            "累计金额（元）",
        ],
    )
    for number, row in enumerate(report.by_county, start=1):
        _append(
            sheet,
            [
                number,
                row.county_name,
                row.county_code,
                _wan(row.period_wan),
                _wan(row.year_to_date_wan),
                _yuan(row.period_fen),
                _yuan(row.year_to_date_fen),
            ],
        )
        _format_row(sheet, {4: WAN_FORMAT, 5: WAN_FORMAT, 6: YUAN_FORMAT, 7: YUAN_FORMAT})
    _append(
        sheet,
        [
            "合计",
            "",
            "",
            _wan(report.period_wan),
            _wan(report.year_to_date_wan),
            _yuan(report.period_fen),
            _yuan(report.year_to_date_fen),
        ],
    )
    _format_row(sheet, {4: WAN_FORMAT, 5: WAN_FORMAT, 6: YUAN_FORMAT, 7: YUAN_FORMAT})
    _append(sheet, [])

    _append(sheet, ["按采购渠道"])
    sheet.cell(row=sheet.max_row, column=1).font = HEADER_FONT
    _header(
        sheet,
        [
            "序号",
            "采购渠道",
            "",
            "本期采购量（万元）",
            "累计采购量（万元）",
            "本期金额（元）",
            "累计金额（元）",
        ],
    )
    for number, channel_row in enumerate(report.by_channel, start=1):
        _append(
            sheet,
            [
                number,
                channel_row.channel_name,
                "",
                _wan(channel_row.period_wan),
                _wan(channel_row.year_to_date_wan),
                _yuan(channel_row.period_fen),
                _yuan(channel_row.year_to_date_fen),
            ],
        )
        _format_row(sheet, {4: WAN_FORMAT, 5: WAN_FORMAT, 6: YUAN_FORMAT, 7: YUAN_FORMAT})
    _append(sheet, [])

    _append(sheet, ["往期调整（已报送周次的迟到记录，按原采购日期列出）"])
    sheet.cell(row=sheet.max_row, column=1).font = HEADER_FONT
    _header(
        sheet, ["序号", "原采购日期", "采购渠道", "产品来源（县/区）", "金额（元）", "是否计入"]
    )
    for number, adjustment in enumerate(report.adjustments, start=1):
        _append(
            sheet,
            [
                number,
                adjustment.occurred_on,
                CHANNEL_NAMES[adjustment.channel][0],
                adjustment.county_name or "—",
                _yuan(adjustment.amount_fen),
                "计入"
                if adjustment.counts
                else REASON_NAMES[adjustment.reason][0]
                if adjustment.reason
                else "不计入",
            ],
        )
        _format_row(sheet, {2: "yyyy-mm-dd", 5: YUAN_FORMAT})
    if not report.adjustments:
        _append(sheet, ["无"])
    _append(sheet, [])

    _append(sheet, ["不计入采购量的金额"])
    sheet.cell(row=sheet.max_row, column=1).font = HEADER_FONT
    _header(sheet, ["序号", "原因", "采购渠道", "", "金额（元）"])
    for number, excluded in enumerate(report.not_counting, start=1):
        _append(
            sheet,
            [
                number,
                excluded.reason_name,
                CHANNEL_NAMES[excluded.channel][0],
                "",
                _yuan(excluded.amount_fen),
            ],
        )
        _format_row(sheet, {5: YUAN_FORMAT})
    if not report.not_counting:
        _append(sheet, ["无"])

    _widths(sheet, [8, 26, 14, 20, 20, 18, 18, 22, 18, 30, 24])
    return _save(workbook)


def report_csv(report: ReportPublic) -> bytes:
    """Return the report's rows by county, and its totals, as CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "学校名称",
            "学校类别",
            "统计周期（起）",
            "统计周期（止）",
            "产品来源（县/区）",
            "区划代码",
            "本期采购量（万元）",
            "累计采购量（万元）",
            "本期金额（元）",
            "累计金额（元）",
        ]
    )
    base = [
        _csv_text(report.school.name),
        SCHOOL_TYPE_NAMES[report.school.school_type.value],
        report.week.isoformat(),
        report.week_end.isoformat(),
    ]
    for row in report.by_county:
        writer.writerow(
            [
                *base,
                _csv_text(row.county_name),
                row.county_code,
                row.period_wan,
                row.year_to_date_wan,
                f"{_yuan(row.period_fen):.2f}",
                f"{_yuan(row.year_to_date_fen):.2f}",
            ]
        )
    writer.writerow(
        [
            *base,
            "合计",
            "",
            report.period_wan,
            report.year_to_date_wan,
            f"{_yuan(report.period_fen):.2f}",
            f"{_yuan(report.year_to_date_fen):.2f}",
        ]
    )
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _overview_rows(sheet: Worksheet, rows: Sequence[OverviewRow], *, ranked: bool) -> None:
    _header(
        sheet,
        [
            "名次" if ranked else "序号",
            "学校名称",
            "学校类别",
            "状态",
            "报送时间",
            "是否逾期",
            "本期采购量（万元）",
            "累计采购量（万元）",
        ],
    )
    for number, row in enumerate(rows, start=1):
        _append(
            sheet,
            [
                row.rank if ranked else number,
                row.school.name,
                SCHOOL_TYPE_NAMES[row.school.school_type.value],
                STATUS_NAMES[row.status.value],
                f"{row.submitted_at:%Y-%m-%d %H:%M}" if row.submitted_at else "",
                "逾期" if row.late else "",
                _wan(row.period_wan),
                _wan(row.year_to_date_wan),
            ],
        )
        _format_row(sheet, {7: WAN_FORMAT, 8: WAN_FORMAT})
    _widths(sheet, [8, 30, 10, 16, 18, 10, 18, 18])


def province_workbook(overview: Overview, ranking: Rankings, counties: CountyTotals) -> bytes:
    """Return the province's week: every school, the rankings and the county totals."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "各校报送情况"
    _append(sheet, [f"全省高校面向采购周报汇总：{overview.week} 至 {overview.week_end}"])
    sheet["A1"].font = TITLE_FONT
    _append(sheet, [f"已报送 {overview.submitted} 所；逾期 {overview.late} 所；金额单位：万元"])
    _overview_rows(sheet, overview.schools, ranked=False)
    _append(
        sheet,
        ["合计", "", "", "", "", "", _wan(overview.period_wan), _wan(overview.year_to_date_wan)],
    )
    _format_row(sheet, {7: WAN_FORMAT, 8: WAN_FORMAT})

    for title, rows in (
        ("本科院校排名", ranking.undergraduate),
        ("高职院校排名", ranking.vocational),
    ):
        ranked_sheet = workbook.create_sheet(title)
        _append(ranked_sheet, [f"{title}（按累计采购量）：截至 {overview.week_end}"])
        ranked_sheet["A1"].font = TITLE_FONT
        _overview_rows(ranked_sheet, rows, ranked=True)

    county_sheet = workbook.create_sheet("按产品来源县")
    _header(
        county_sheet,
        [
            "序号",
            "产品来源（县/区）",
            "区划代码",
            "本期采购量（万元）",
            "累计采购量（万元）",
            "采购学校数",
        ],
    )
    for number, county in enumerate(counties.counties, start=1):
        _append(
            county_sheet,
            [
                number,
                county.county_name,
                county.county_code,
                _wan(county.period_wan),
                _wan(county.year_to_date_wan),
                county.schools,
            ],
        )
        _format_row(county_sheet, {4: WAN_FORMAT, 5: WAN_FORMAT})
    _append(
        county_sheet,
        ["合计", "", "", _wan(counties.period_wan), _wan(counties.year_to_date_wan), ""],
    )
    _format_row(county_sheet, {4: WAN_FORMAT, 5: WAN_FORMAT})
    _widths(county_sheet, [8, 20, 12, 18, 18, 12])
    return _save(workbook)


LOCATION_TYPE_NAMES = {
    "dormitory": "学生公寓",
    "canteen": "学生食堂",
    "library": "图书馆",
    "sports_venue": "体育场馆",
    "staff_living": "教职工生活区",
    "other": "其他",
}


def plan_workbook(school_name: str, plan: Recommendation) -> bytes:
    """Return a school's placement plan with each number's explanation, as .xlsx."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "点位规划"
    _append(sheet, [f"{school_name} 消费扶贫智能专柜点位规划"])
    sheet["A1"].font = TITLE_FONT
    _append(sheet, [f"在校生 {plan.enrollment} 人；规划 {plan.total} 台：{plan.total_explanation}"])
    _append(sheet, [f"已安装 {plan.installed} 台，其中在线 {plan.online} 台"])
    _append(sheet, [])
    _header(sheet, ["序号", "点位类型", "规划台数", "说明"])
    for number, row in enumerate(plan.by_type, start=1):
        _append(
            sheet,
            [number, LOCATION_TYPE_NAMES[row.location_type.value], row.count, row.explanation],
        )
    _append(sheet, [])
    _header(sheet, ["序号", "建筑", "点位类型", "规划台数", "已安装", "在线", "待安装", "说明"])
    for number, building in enumerate(plan.by_building, start=1):
        _append(
            sheet,
            [
                number,
                building.building_name,
                LOCATION_TYPE_NAMES[building.location_type.value],
                building.count,
                building.installed,
                building.online,
                building.to_install,
                building.explanation,
            ],
        )
    _append(
        sheet,
        [
            "合计",
            "",
            "",
            plan.total,
            plan.installed,
            plan.online,
            sum(building.to_install for building in plan.by_building),
            "",
        ],
    )
    _widths(sheet, [8, 26, 14, 10, 10, 10, 10, 60])
    return _save(workbook)


def province_plans_workbook(plans: ProvincePlans) -> bytes:
    """Return every school's plan against installed and online cabinets, as .xlsx."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "全省点位规划"
    _append(
        sheet,
        [
            f"全省消费扶贫智能专柜规划：目标 {plans.target} 台，"
            f"已规划 {plans.planned} 台，已安装 {plans.installed} 台，在线 {plans.online} 台"
        ],
    )
    sheet["A1"].font = TITLE_FONT
    _header(
        sheet, ["序号", "学校名称", "学校类别", "在校生", "规划台数", "报送时间", "已安装", "在线"]
    )
    for number, row in enumerate(plans.schools, start=1):
        _append(
            sheet,
            [
                number,
                row.school_name,
                SCHOOL_TYPE_NAMES[row.school_type],
                row.enrollment,
                row.planned if row.planned is not None else "未报送",
                f"{row.plan_submitted_at:%Y-%m-%d %H:%M}" if row.plan_submitted_at else "",
                row.installed,
                row.online,
            ],
        )
    _append(sheet, ["合计", "", "", "", plans.planned, "", plans.installed, plans.online])
    _widths(sheet, [8, 30, 10, 10, 10, 18, 10, 10])
    return _save(workbook)
