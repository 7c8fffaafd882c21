"""Read ledger entries from a CSV or Excel file, checking every row before saving any.

The file has one header row naming the columns in Chinese (as in the template that
``template_workbook`` writes) or by their English keys, and one purchase per row. A file
with any bad row is refused as a whole, with every problem listed by row and column, so a
corrected file can be imported again without duplicating the good rows.
"""

import csv
import io
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.utils import get_column_letter
from pydantic import ValidationError

from fleet_server.models import ProcurementChannel
from fleet_server.models.base import utc_now
from fleet_server.reporting.periods import local_date
from fleet_server.schemas.procurement import CHANNEL_NAMES, EntryCreate
from fleet_server.services.errors import InvalidInputError
from fleet_server.services.procurement_ledger import EntryInput

MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_IMPORT_ROWS = 5_000
# Columns read from each row of a workbook: the template's, with room for extra ones.
MAX_COLUMNS = 40
XLSX_SIGNATURE = b"PK\x03\x04"


@dataclass(frozen=True)
class Column:
    key: str
    header: str  # Chinese header, as in the template
    header_en: str
    required: bool


COLUMNS = (
    Column("occurred_on", "采购日期", "Date", True),
    Column("channel", "采购渠道", "Channel", True),
    Column("product_name", "产品名称", "Product", True),
    Column("certificate_number", "认定编号", "Certificate number", False),
    Column("county_code", "产品来源县区划代码", "County code", False),
    Column("county_name", "产品来源县", "County", False),
    Column("supplier", "供应商", "Supplier", True),
    Column("quantity", "数量", "Quantity", True),
    Column("unit", "单位", "Unit", True),
    Column("amount_yuan", "金额（元）", "Amount (yuan)", True),
    Column("voucher_ref", "凭证号", "Voucher", True),
    Column("note", "备注", "Note", False),
)

# Every name a header cell may carry for a column: the Chinese header, the English header
# and the key, compared without spaces and case.
_HEADER_KEYS = {
    name.replace(" ", "").lower(): column.key
    for column in COLUMNS
    for name in (column.header, column.header_en, column.key, column.header.replace("（", "("))
}
_CHANNEL_VALUES = {
    name.replace(" ", "").lower(): channel
    for channel, (name_zh, name_en) in CHANNEL_NAMES.items()
    if channel is not ProcurementChannel.CABINET
    for name in (name_zh, name_en, channel.value, *name_zh.split("/"))
}


@dataclass
class RowProblem:
    row: int
    column: str
    message: str
    message_en: str

    def as_detail(self) -> dict[str, str]:
        return {
            "field": f"row {self.row}: {self.column}",
            "message": f"第 {self.row} 行「{self.column}」：{self.message}",
            "message_en": f"Row {self.row}, {self.column}: {self.message_en}",
        }


def _refuse(message: str, message_en: str, problems: list[RowProblem] | None = None) -> None:
    details = {"errors": [problem.as_detail() for problem in problems]} if problems else None
    raise InvalidInputError(
        code="import_invalid", message=message, message_en=message_en, details=details
    )


def read_rows(content: bytes) -> list[list[Any]]:
    """Return the file's rows as lists of cell values; the first row is the header."""
    if not content:
        _refuse("文件是空的", "The file is empty")
    if len(content) > MAX_IMPORT_BYTES:
        _refuse(
            f"文件不能超过 {MAX_IMPORT_BYTES // (1024 * 1024)} MB",
            f"The file may not exceed {MAX_IMPORT_BYTES // (1024 * 1024)} MB",
        )
    if content.startswith(XLSX_SIGNATURE):
        return _read_workbook(content)
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = content.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        _refuse("无法识别文件编码，请使用 UTF-8 或 GBK 编码的 CSV", "Use a UTF-8 or GBK CSV file")
    if "\x00" in text:
        _refuse("文件不是 CSV 或 Excel 文件", "The file is neither CSV nor Excel")
    try:
        return [list(row) for row in csv.reader(io.StringIO(text))]
    except csv.Error as error:
        _refuse("CSV 文件格式有误", f"The CSV file is malformed: {error}")
    raise AssertionError("unreachable")


def _read_workbook(content: bytes) -> list[list[Any]]:
    """Return the first sheet's rows, reading no more columns and rows than an import uses.

    The sheet's declared size is not trusted: a small file may claim 16,384 columns and a
    million rows, so only MAX_COLUMNS columns are read and reading stops one row past the
    row limit.
    """
    rows: list[list[Any]] = []
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            for row in sheet.iter_rows(values_only=True, max_col=MAX_COLUMNS):
                if any(_blank_to_none(cell) is not None for cell in row):
                    rows.append(list(row))
                    if len(rows) > MAX_IMPORT_ROWS + 1:
                        break
        finally:
            workbook.close()
    # openpyxl raises whatever its zip, XML and number parsers raise on a damaged file.
    except Exception as error:
        _refuse(
            "无法读取 Excel 文件，请另存为 .xlsx 后重试",
            f"The Excel file cannot be read ({error.__class__.__name__}); save it as .xlsx",
        )
    return rows


def parse_entries(content: bytes) -> list[EntryInput]:
    """Return the file's entries, or raise InvalidInputError listing every bad cell."""
    rows = read_rows(content)
    rows = [row for row in rows if any(_blank_to_none(cell) is not None for cell in row)]
    if not rows:
        _refuse("文件中没有数据", "The file holds no rows")
    header, data = rows[0], rows[1:]
    positions: dict[str, int] = {}
    for index, cell in enumerate(header):
        key = _HEADER_KEYS.get(str(cell or "").replace(" ", "").lower())
        if key is not None and key not in positions:
            positions[key] = index
    missing = [
        column.header for column in COLUMNS if column.required and column.key not in positions
    ]
    if missing:
        _refuse(
            f"表头缺少列：{'、'.join(missing)}（请使用导入模板）",
            f"The header row lacks the columns: {', '.join(missing)} (use the template)",
        )
    if not data:
        _refuse("文件中只有表头，没有数据行", "The file has a header row but no data rows")
    if len(data) > MAX_IMPORT_ROWS:
        _refuse(
            f"一次最多导入 {MAX_IMPORT_ROWS} 行",
            f"At most {MAX_IMPORT_ROWS} rows can be imported at once",
        )

    entries: list[EntryInput] = []
    problems: list[RowProblem] = []
    for offset, row in enumerate(data):
        row_number = offset + 2  # spreadsheet row: the header is row 1
        cells = {
            key: _blank_to_none(row[index]) if index < len(row) else None
            for key, index in positions.items()
        }
        entry = _parse_row(row_number, cells, problems)
        if entry is not None:
            entries.append(entry)
    if problems:
        _refuse(
            f"导入失败：{len(problems)} 处错误，未导入任何记录。"
            f"{problems[0].as_detail()['message']}",
            f"Import refused: {len(problems)} problems, nothing was imported. "
            f"{problems[0].as_detail()['message_en']}",
            problems,
        )
    return entries


def _blank_to_none(cell: Any) -> Any:
    if cell is None:
        return None
    if isinstance(cell, str):
        stripped = cell.strip()
        return stripped or None
    return cell


def _header(key: str) -> str:
    return next(column.header for column in COLUMNS if column.key == key)


def _parse_row(row: int, cells: dict[str, Any], problems: list[RowProblem]) -> EntryInput | None:
    count_before = len(problems)
    values: dict[str, Any] = {}

    day = cells.get("occurred_on")
    if isinstance(day, datetime):
        values["occurred_on"] = day.date()
    elif isinstance(day, date):
        values["occurred_on"] = day
    elif day is not None:
        parsed = _parse_date(str(day))
        if parsed is None:
            problems.append(
                RowProblem(
                    row,
                    "采购日期",
                    f"无法识别的日期 {day!s}（应为 YYYY-MM-DD）",
                    f"unrecognised date {day!s} (use YYYY-MM-DD)",
                )
            )
        values["occurred_on"] = parsed

    channel = cells.get("channel")
    if channel is not None:
        found = _CHANNEL_VALUES.get(str(channel).replace(" ", "").lower())
        if found is None:
            problems.append(
                RowProblem(
                    row,
                    "采购渠道",
                    f"未知的采购渠道「{channel}」（食堂、工会福利、校内超市、扶贫窗口、后勤服务企业）",
                    f"unknown channel {channel!r}",
                )
            )
        values["channel"] = found.value if found else None

    amount = cells.get("amount_yuan")
    if amount is not None:
        fen = yuan_to_fen(amount)
        if fen is None:
            problems.append(
                RowProblem(
                    row,
                    "金额（元）",
                    f"金额 {amount} 无效（应为正数，最多两位小数）",
                    f"amount {amount} is not a positive number with at most two decimals",
                )
            )
        values["amount_fen"] = fen

    quantity = cells.get("quantity")
    if quantity is not None:
        try:
            values["quantity"] = Decimal(unicodedata.normalize("NFKC", str(quantity)))
        except InvalidOperation:
            values["quantity"] = str(quantity)

    for key in (
        "product_name",
        "certificate_number",
        "county_name",
        "supplier",
        "unit",
        "voucher_ref",
        "note",
    ):
        if cells.get(key) is not None:
            values[key] = str(cells[key])
    if cells.get("county_code") is not None:
        code = cells["county_code"]
        values["county_code"] = (
            str(int(code))
            if isinstance(code, int | float) and abs(code) < 10**7
            else unicodedata.normalize("NFKC", str(code))
        )

    if len(problems) > count_before:
        return None
    try:
        entry = EntryCreate.model_validate(values)
    except ValidationError as error:
        for item in error.errors():
            key = str(item["loc"][0]) if item["loc"] else ""
            column = (
                _header("amount_yuan" if key == "amount_fen" else key)
                if key in {column.key for column in COLUMNS} | {"amount_fen"}
                else key
            )
            message_zh = "必填" if item["type"] == "missing" else "取值无效"
            problems.append(RowProblem(row, column, message_zh, item["msg"]))
        return None
    if entry.occurred_on > local_date(utc_now()):
        problems.append(
            RowProblem(
                row,
                "采购日期",
                f"采购日期 {entry.occurred_on} 晚于今天",
                f"the date {entry.occurred_on} is after today",
            )
        )
        return None
    return entry.to_input()


def _parse_date(text: str) -> date | None:
    for pattern in ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日"):
        try:
            return datetime.strptime(text.strip(), pattern).date()
        except ValueError:
            continue
    return None


# Largest amount of one entry: 100 million yuan, far above any single purchase.
MAX_ENTRY_FEN = 10**10


def yuan_to_fen(value: Any) -> int | None:
    """Return a yuan amount in fen, exactly, or None if it is not a valid amount.

    Excel hands numbers over as floats; their shortest decimal text is what the cell
    shows, so 12.3 becomes 1230 fen and not 1229. Text is read after NFKC normalisation,
    so full-width digits count as digits.
    """
    if isinstance(value, bool):
        return None
    text = repr(value) if isinstance(value, float) else unicodedata.normalize("NFKC", str(value))
    try:
        amount = Decimal(text.replace(",", "").strip())
        if not amount.is_finite() or amount <= 0 or amount > Decimal(MAX_ENTRY_FEN) / 100:
            return None
        if amount != amount.quantize(Decimal("0.01")):
            return None
    # InvalidOperation for text that is no number, Overflow for exponents past any limit.
    except ArithmeticError:
        return None
    return int(amount * 100)


def template_workbook() -> bytes:
    """Return an empty import template: the header row, and a sheet that explains it."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "台账导入"
    sheet.append([column.header for column in COLUMNS])
    for index, column in enumerate(COLUMNS, start=1):
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = max(12, 2 * len(column.header) + 4)

    notes = workbook.create_sheet("填写说明")
    notes.append(["列", "是否必填", "说明"])
    explanations = {
        "occurred_on": "凭证上的采购日期，格式 YYYY-MM-DD，例如 2026-11-30",
        "channel": "食堂、工会福利、校内超市/扶贫窗口、后勤服务企业之一（智能专柜销售自动记入）",
        "product_name": "产品名称，例如 金寨县 高山大米",
        "certificate_number": "扶贫产品认定编号；未填写或目录中没有的产品不计入采购量",
        "county_code": "产品来源县的六位区划代码（新旧代码均可，如寿县 340422 或 341521）",
        "county_name": "产品来源县名称；填写了区划代码或认定编号时可不填",
        "supplier": "供应商（企业或合作社）名称",
        "quantity": "数量，正数，最多三位小数",
        "unit": "单位，例如 千克、箱、份",
        "amount_yuan": "金额（元），正数，最多两位小数",
        "voucher_ref": "发票号或收据编号",
        "note": "备注，可不填",
    }
    for column in COLUMNS:
        notes.append(
            [column.header, "必填" if column.required else "选填", explanations[column.key]]
        )
    notes.column_dimensions["A"].width = 20
    notes.column_dimensions["C"].width = 80
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
