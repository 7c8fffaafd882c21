"""Procurement ledger and weekly reports: weeks, adjustments, counties, rounding, exports."""

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from openpyxl import Workbook, load_workbook
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.db import session_scope
from fleet_server.ingest.store import BatchStore
from fleet_server.models import (
    ProcurementDailyTotal,
    ProcurementEntry,
    ProcurementReport,
    Product,
    School,
)
from fleet_server.reporting.periods import SHANGHAI
from fleet_server.reporting.wan_yuan import wan_yuan
from fleet_server.services.audit import list_audit_entries
from kiosk_agent.contract import SaleRecord
from purchase_helpers import Shop, current_code, received, sale_record

pytest_plugins = ["server_fixtures", "purchase_fixtures"]

WEEK_1 = date(2026, 11, 16)  # Monday; these weeks are over on the test's date
WEEK_2 = date(2026, 11, 23)
WEEK_3 = date(2026, 11, 30)
API = "/api/v1"
# Unit prices of shop.products[0] and [1] on the cabinet, within the purchase hold.
PRICES = (350, 590)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)  # type: ignore[misc]


def cabinet_sale(
    client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    at: datetime,
    lines: list[tuple[int, int]],
) -> SaleRecord:
    """Buy through the purchase API and settle a sale recorded at ``at``.

    ``lines`` are (product index in shop.products, quantity), priced from PRICES.
    """
    response = client.post(
        f"{API}/purchases",
        json={"kiosk_id": shop.kiosk_id, "code": current_code(shop)},
        headers=shop.headers["student"],
    )
    assert response.status_code == 201, response.json()
    purchase_id = uuid.UUID(response.json()["id"])
    record = sale_record(
        shop.kiosk_id,
        purchase_id,
        [(shop.products[index], quantity, PRICES[index], index) for index, quantity in lines],
    )
    record = record.model_copy(update={"recorded_at": at.astimezone(UTC)})
    result = BatchStore(seeded).commit([received(record)])
    assert result.new_sales == 1
    return record


def sale_amount(shop: Shop, lines: list[tuple[int, int]]) -> int:
    return sum(PRICES[index] * quantity for index, quantity in lines)


def report(client: TestClient, shop: Shop, week: date, user: str = "school_admin_a") -> Any:
    response = client.get(
        f"{API}/schools/{shop.world.a.school_id}/procurement/reports/{week}",
        headers=shop.headers[user],
    )
    assert response.status_code == 200, response.json()
    return response.json()


def submit(client: TestClient, shop: Shop, week: date) -> Any:
    return client.post(
        f"{API}/schools/{shop.world.a.school_id}/procurement/reports/{week}/submit",
        headers=shop.headers["school_admin_a"],
    )


def certificate_of(seeded: sessionmaker[Session], name: str) -> str:
    with seeded() as session:
        number = session.scalar(sa.select(Product.certificate_number).where(Product.name == name))
    assert number is not None, f"{name} is missing from the seed catalog"
    return number


def entry(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "canteen",
        "occurred_on": "2026-11-18",
        "product_name": "天柱剑毫",
        "county_code": "340882",
        "supplier": "潜山市某茶叶专业合作社",
        "quantity": "20",
        "unit": "盒",
        "amount_fen": 120_000,
        "voucher_ref": "FP-0001",
    }
    body.update(overrides)
    return body


def add_entry(client: TestClient, shop: Shop, user: str = "school_admin_a", **fields: Any) -> Any:
    response = client.post(
        f"{API}/schools/{shop.world.a.school_id}/procurement/entries",
        json=entry(**fields),
        headers=shop.headers[user],
    )
    assert response.status_code == 201, response.json()
    return response.json()


# --- Weeks in Asia/Shanghai time ----------------------------------------------------------------


def test_sunday_midnight_and_monday_fall_in_different_weeks(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    sunday_late = local(2026, 11, 22, 23, 59, 59)
    monday_start = local(2026, 11, 23, 0, 0, 0)
    # Both instants fall on Sunday 22 November in UTC.
    assert sunday_late.astimezone(UTC).date() == monday_start.astimezone(UTC).date()

    cabinet_sale(shop_client, shop, seeded, sunday_late, [(0, 2), (1, 1)])
    cabinet_sale(shop_client, shop, seeded, monday_start, [(0, 1)])
    first = report(shop_client, shop, WEEK_1)
    second = report(shop_client, shop, WEEK_2)

    first_fen = sale_amount(shop, [(0, 2), (1, 1)])
    second_fen = sale_amount(shop, [(0, 1)])
    assert first["period_fen"] == first_fen
    assert second["period_fen"] == second_fen
    assert second["year_to_date_fen"] == first_fen + second_fen
    assert [row["channel"] for row in second["by_channel"]] == ["cabinet"]
    assert first["status"] == "draft"


# --- Submission and late entries --------------------------------------------------------------


def test_late_sale_for_submitted_week_is_next_weeks_adjustment(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    cabinet_sale(shop_client, shop, seeded, local(2026, 11, 18, 12, 0, 0), [(0, 2)])
    submitted = submit(shop_client, shop, WEEK_1)
    assert submitted.status_code == 200, submitted.json()

    # A cabinet that was offline sends a sale of Friday 20 November after the submission.
    cabinet_sale(shop_client, shop, seeded, local(2026, 11, 20, 9, 30, 0), [(1, 1)])
    cabinet_sale(shop_client, shop, seeded, local(2026, 11, 24, 8, 0, 0), [(0, 1)])
    first = report(shop_client, shop, WEEK_1)
    second = report(shop_client, shop, WEEK_2)

    original = sale_amount(shop, [(0, 2)])
    late = sale_amount(shop, [(1, 1)])
    own = sale_amount(shop, [(0, 1)])
    assert first["status"] == "submitted"
    assert first["period_fen"] == submitted.json()["period_fen"] == original
    assert first["adjustments"] == []
    assert second["week_fen"] == own
    assert second["adjustment_fen"] == late
    assert second["period_fen"] == own + late
    assert second["year_to_date_fen"] == original + late + own
    assert [(row["occurred_on"], row["amount_fen"]) for row in second["adjustments"]] == [
        ("2026-11-20", late)
    ]
    with seeded() as session:
        actions = [
            audit.action
            for audit in list_audit_entries(
                session, object_type="procurement_report", object_id=first_report_id(session)
            )
        ]
    assert actions == ["report.submit"]


def first_report_id(session: Session) -> int:
    report_id = session.scalar(sa.select(sa.func.min(ProcurementReport.id)))
    assert report_id is not None
    return report_id


def test_submission_rules(shop_client: TestClient, shop: Shop) -> None:
    school = shop.world.a.school_id
    path = f"{API}/schools/{school}/procurement/reports"
    headers = shop.headers
    this_monday = date.today() - timedelta(days=date.today().weekday())

    not_over = shop_client.post(f"{path}/{this_monday}/submit", headers=headers["school_admin_a"])
    not_monday = shop_client.post(f"{path}/2026-11-17/submit", headers=headers["school_admin_a"])
    ancient = shop_client.post(f"{path}/0001-01-01/submit", headers=headers["school_admin_a"])
    too_old = shop_client.post(f"{path}/2017-01-02/submit", headers=headers["school_admin_a"])
    by_province = shop_client.post(f"{path}/{WEEK_1}/submit", headers=headers["province_admin"])
    other_school = shop_client.post(f"{path}/{WEEK_1}/submit", headers=headers["school_admin_b"])
    by_operator = shop_client.post(f"{path}/{WEEK_1}/submit", headers=headers["operator_a"])
    first = submit(shop_client, shop, WEEK_1 - timedelta(days=14))
    again = submit(shop_client, shop, WEEK_1 - timedelta(days=14))
    earlier = submit(shop_client, shop, WEEK_1 - timedelta(days=21))

    assert not_over.json()["code"] == "week_not_over"
    assert not_monday.json()["code"] == "week_not_monday"
    assert ancient.json()["code"] == "week_out_of_range"
    assert too_old.json()["code"] == "report_too_old"
    assert by_province.status_code == 403
    assert other_school.status_code == 404
    assert by_operator.status_code == 403
    assert first.status_code == 200, first.json()
    assert again.json()["code"] == "report_already_submitted"
    assert earlier.json()["code"] == "report_out_of_order"


def test_skipped_week_is_carried_into_the_next_submitted_report(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    submit(shop_client, shop, WEEK_1 - timedelta(days=7))
    cabinet_sale(shop_client, shop, seeded, local(2026, 11, 18, 12, 0, 0), [(0, 2)])
    cabinet_sale(shop_client, shop, seeded, local(2026, 11, 25, 12, 0, 0), [(1, 1)])

    # The school skips WEEK_1 and submits WEEK_2.
    submitted = submit(shop_client, shop, WEEK_2)
    skipped = report(shop_client, shop, WEEK_1)
    again = submit(shop_client, shop, WEEK_1)

    assert submitted.status_code == 200, submitted.json()
    body = submitted.json()
    assert body["week_fen"] == sale_amount(shop, [(1, 1)])
    assert body["adjustment_fen"] == sale_amount(shop, [(0, 2)])
    assert [row["occurred_on"] for row in body["adjustments"]] == ["2026-11-18"]
    assert body["year_to_date_fen"] == sale_amount(shop, [(0, 2), (1, 1)])
    assert skipped["status"] == "draft"
    assert skipped["period_fen"] == 0
    assert again.json()["code"] == "report_out_of_order"


# --- Counties, counting rules, rounding -----------------------------------------------------------


def test_old_and_new_division_codes_are_one_county(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    tea = certificate_of(seeded, "天柱剑毫(绿茶)")
    chicken = certificate_of(seeded, "淮南麻黄鸡")

    add_entry(shop_client, shop, certificate_number=tea, county_code="340824", amount_fen=10_000)
    add_entry(shop_client, shop, certificate_number=tea, county_code="340882", amount_fen=20_000)
    add_entry(shop_client, shop, certificate_number=chicken, county_code="341521", amount_fen=300)
    add_entry(shop_client, shop, certificate_number=chicken, county_code="340422", amount_fen=700)
    body = report(shop_client, shop, WEEK_1)

    rows = {row["county_code"]: row for row in body["by_county"]}
    assert set(rows) == {"340882", "340422"}
    assert rows["340882"]["county_name"] == "潜山市"
    assert rows["340882"]["period_fen"] == 30_000
    assert rows["340422"]["county_name"] == "寿县"
    assert rows["340422"]["period_fen"] == 1_000


def test_entries_that_do_not_count_are_kept_with_the_reason(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    tea = certificate_of(seeded, "天柱剑毫(绿茶)")

    counted = add_entry(shop_client, shop, certificate_number=tea)
    uncertified = add_entry(shop_client, shop, county_code="340882", amount_fen=5_000)
    not_poor = add_entry(
        shop_client, shop, certificate_number=tea, county_code="340104", amount_fen=7_000
    )
    mismatch = add_entry(
        shop_client, shop, certificate_number=tea, county_code="340422", amount_fen=9_000
    )
    body = report(shop_client, shop, WEEK_1)

    assert counted["counts"] is True
    assert counted["county_name"] == "潜山市"
    assert (uncertified["counts"], uncertified["not_counting_reason"]) == (False, "not_certified")
    assert not_poor["not_counting_reason"] == "not_poverty_county"
    assert not_poor["not_counting_reason_name"] == "产品来源非贫困县"
    assert mismatch["not_counting_reason"] == "county_mismatch"
    assert body["period_fen"] == 120_000
    assert {row["reason"]: row["amount_fen"] for row in body["not_counting"]} == {
        "not_certified": 5_000,
        "not_poverty_county": 7_000,
        "county_mismatch": 9_000,
    }
    listed = shop_client.get(
        f"{API}/schools/{shop.world.a.school_id}/procurement/entries?counting=false",
        headers=shop.headers["school_admin_a"],
    ).json()
    assert listed["total"] == 3


def test_rows_add_up_to_the_total_in_fen_and_in_wan_yuan(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    tea = certificate_of(seeded, "天柱剑毫(绿茶)")
    chicken = certificate_of(seeded, "淮南麻黄鸡")
    # Each amount alone is 0.5 units of 0.01 万元 away from a rounding step.
    for certificate, channel, amount in [
        (tea, "canteen", 15_000),
        (chicken, "canteen", 25_000),
        (tea, "union_welfare", 35_000),
        (chicken, "service_company", 5_000),
    ]:
        add_entry(
            shop_client, shop, certificate_number=certificate, channel=channel, amount_fen=amount
        )
    cabinet_sale(shop_client, shop, seeded, local(2026, 11, 19, 10, 0, 0), [(0, 3), (1, 2)])
    body = report(shop_client, shop, WEEK_1)

    for breakdown in ("by_county", "by_channel"):
        rows = body[breakdown]
        assert sum(row["period_fen"] for row in rows) == body["period_fen"]
        assert sum(row["year_to_date_fen"] for row in rows) == body["year_to_date_fen"]
        assert sum(Decimal(row["period_wan"]) for row in rows) == Decimal(body["period_wan"])
        assert sum(Decimal(row["year_to_date_wan"]) for row in rows) == Decimal(
            body["year_to_date_wan"]
        )
        for row in rows:
            exact = Decimal(row["period_fen"]) / 1_000_000
            assert abs(Decimal(row["period_wan"]) - exact) < Decimal("0.01")
    assert Decimal(body["period_wan"]) == wan_yuan(body["period_fen"])


# --- Voids, refunds and vouchers ----------------------------------------------------------------


def test_void_after_submission_is_a_negative_adjustment(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    tea = certificate_of(seeded, "天柱剑毫(绿茶)")
    wrong = add_entry(shop_client, shop, certificate_number=tea, amount_fen=50_000)
    submit(shop_client, shop, WEEK_1)

    voided = shop_client.post(
        f"{API}/schools/{shop.world.a.school_id}/procurement/entries/{wrong['id']}/void",
        json={"reason": "重复录入"},
        headers=shop.headers["school_admin_a"],
    )
    again = shop_client.post(
        f"{API}/schools/{shop.world.a.school_id}/procurement/entries/{wrong['id']}/void",
        json={"reason": "重复录入"},
        headers=shop.headers["school_admin_a"],
    )
    first = report(shop_client, shop, WEEK_1)
    second = report(shop_client, shop, WEEK_2)

    assert voided.status_code == 200, voided.json()
    assert voided.json()["voided_in_week"] == str(WEEK_2)
    assert again.json()["code"] == "entry_already_voided"
    assert first["period_fen"] == 50_000
    assert second["adjustment_fen"] == -50_000
    assert second["year_to_date_fen"] == 0
    assert second["adjustments"][0]["occurred_on"] == "2026-11-18"


def test_refund_takes_the_amount_out_of_the_week(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    record = cabinet_sale(
        shop_client, shop, seeded, local(2026, 11, 18, 12, 0, 0), [(0, 2), (1, 1)]
    )
    refund = shop_client.post(
        f"{API}/sales/{record.sale_id}/refunds",
        json={"amount_fen": PRICES[1], "reason": "包装破损"},
        headers=shop.headers["operator_a"],
    )
    body = report(shop_client, shop, WEEK_1)

    assert refund.status_code == 201, refund.json()
    assert body["period_fen"] == sale_amount(shop, [(0, 2)])


def test_unpaid_cabinet_lines_do_not_count(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    # A sale whose purchase session the server does not know is flagged and not charged.
    record = sale_record(shop.kiosk_id, uuid.uuid4(), [(shop.products[0], 1, 350, 0)])
    record = record.model_copy(update={"recorded_at": local(2026, 11, 18, 9, 0, 0)})
    BatchStore(seeded).commit([received(record)])
    body = report(shop_client, shop, WEEK_1)

    assert body["period_fen"] == 0
    assert body["not_counting"] == [
        {
            "reason": "not_paid",
            "reason_name": "未付款",
            "reason_name_en": "Not paid",
            "channel": "cabinet",
            "amount_fen": 350,
            "line_count": 1,
        }
    ]


def test_voucher_upload_checks_the_file(shop_client: TestClient, shop: Shop) -> None:
    school = shop.world.a.school_id
    path = f"{API}/schools/{school}/procurement/vouchers"
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

    stored = shop_client.post(
        path, files={"file": ("发票.png", png, "image/png")}, headers=shop.headers["school_admin_a"]
    )
    script = shop_client.post(
        path,
        files={"file": ("invoice.pdf", b"<script>", "application/pdf")},
        headers=shop.headers["school_admin_a"],
    )
    empty = shop_client.post(
        path, files={"file": ("a.png", b"", "image/png")}, headers=shop.headers["school_admin_a"]
    )
    voucher_id = stored.json()["id"]
    linked = add_entry(shop_client, shop, voucher_file_id=voucher_id)
    downloaded = shop_client.get(f"{path}/{voucher_id}", headers=shop.headers["school_admin_a"])
    foreign = shop_client.get(f"{path}/{voucher_id}", headers=shop.headers["school_admin_b"])
    other_school = shop_client.post(
        f"{API}/schools/{school}/procurement/entries",
        json=entry(voucher_file_id=voucher_id),
        headers=shop.headers["province_admin"],
    )

    assert stored.status_code == 201, stored.json()
    assert stored.json()["content_type"] == "image/png"
    assert script.status_code == 422
    assert script.json()["code"] == "voucher_type_not_accepted"
    assert script.json()["details"][0]["field"] == "body.file"
    assert empty.json()["code"] == "voucher_empty"
    assert linked["voucher_file_id"] == voucher_id
    assert downloaded.content == png
    assert downloaded.headers["content-type"] == "image/png"
    assert foreign.status_code == 404
    assert other_school.status_code == 201


# --- Import ------------------------------------------------------------------------------------


HEADER = (
    "采购日期,采购渠道,产品名称,认定编号,产品来源县区划代码,产品来源县,"
    "供应商,数量,单位,金额（元）,凭证号,备注"
)


def import_file(client: TestClient, shop: Shop, name: str, content: bytes) -> Any:
    return client.post(
        f"{API}/schools/{shop.world.a.school_id}/procurement/imports",
        files={"file": (name, content, "application/octet-stream")},
        headers=shop.headers["school_admin_a"],
    )


def ledger_size(seeded: sessionmaker[Session]) -> int:
    with seeded() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(ProcurementEntry)) or 0


def test_csv_import_is_all_or_nothing(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    tea = certificate_of(seeded, "天柱剑毫(绿茶)")
    good = f"2026-11-17,食堂,天柱剑毫,{tea},340882,,合作社甲,10,盒,1234.56,FP-1,"
    bad_rows = [
        good,
        "2026-13-01,食堂,大米,,341524,金寨县,合作社乙,5,袋,100,FP-2,",
        "2026-11-18,小卖部,大米,,341524,金寨县,合作社乙,5,袋,100.001,FP-3,",
        "2026-11-18,工会福利,,,341524,金寨县,合作社乙,5,袋,100,FP-4,",
    ]

    refused = import_file(
        shop_client, shop, "ledger.csv", "\n".join([HEADER, *bad_rows]).encode("utf-8-sig")
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "import_invalid"
    fields = [detail["field"] for detail in refused.json()["details"]]
    assert fields == [
        "row 3: 采购日期",
        "row 4: 采购渠道",
        "row 4: 金额（元）",
        "row 5: 产品名称",
    ]
    assert ledger_size(seeded) == 0

    fixed = [good, "2026/11/18,工会福利,金寨大米,,341524,金寨县,合作社乙,5,袋,100,FP-4,补录"]
    accepted = import_file(
        shop_client, shop, "ledger.csv", "\n".join([HEADER, *fixed]).encode("gb18030")
    )
    assert accepted.status_code == 201, accepted.json()
    assert accepted.json()["created"] == 2
    assert accepted.json()["counting"] == 1
    assert accepted.json()["amount_fen"] == 123_456 + 10_000
    assert report(shop_client, shop, WEEK_1)["period_fen"] == 123_456


def test_excel_import_reads_numbers_and_dates(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    tea = certificate_of(seeded, "天柱剑毫(绿茶)")
    template = shop_client.get(
        f"{API}/procurement/import-template", headers=shop.headers["school_admin_a"]
    )
    workbook = load_workbook(io.BytesIO(template.content))
    sheet = workbook.worksheets[0]
    sheet.append(
        [
            date(2026, 11, 19),
            "食堂",
            "天柱剑毫",
            tea,
            340882,
            None,
            "合作社甲",
            12.5,
            "千克",
            12.3,
            "FP-9",
            None,
        ]
    )
    buffer = io.BytesIO()
    workbook.save(buffer)

    accepted = import_file(shop_client, shop, "ledger.xlsx", buffer.getvalue())
    broken = import_file(shop_client, shop, "ledger.xlsx", b"PK\x03\x04 not really a zip")

    assert template.status_code == 200
    assert [cell.value for cell in load_workbook(io.BytesIO(template.content)).worksheets[0][1]][
        :3
    ] == ["采购日期", "采购渠道", "产品名称"]
    assert accepted.status_code == 201, accepted.json()
    assert accepted.json()["amount_fen"] == 1_230
    with seeded() as session:
        saved = session.scalars(sa.select(ProcurementEntry)).one()
        assert saved.quantity == Decimal("12.5")
        assert saved.occurred_on == date(2026, 11, 19)
    assert broken.status_code == 422
    assert broken.json()["code"] == "import_invalid"


# --- Exports -----------------------------------------------------------------------------------


def test_excel_and_csv_match_the_api(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    tea = certificate_of(seeded, "天柱剑毫(绿茶)")
    chicken = certificate_of(seeded, "淮南麻黄鸡")
    add_entry(shop_client, shop, certificate_number=tea, amount_fen=1_234_567)
    add_entry(shop_client, shop, certificate_number=chicken, amount_fen=765_433)
    cabinet_sale(shop_client, shop, seeded, local(2026, 11, 20, 18, 0, 0), [(0, 1)])
    submit(shop_client, shop, WEEK_1)
    body = report(shop_client, shop, WEEK_1)
    path = f"{API}/schools/{shop.world.a.school_id}/procurement/reports/{WEEK_1}/export"

    xlsx = shop_client.get(path, headers=shop.headers["school_admin_a"])
    text = shop_client.get(f"{path}?format=csv", headers=shop.headers["school_admin_a"])

    assert xlsx.status_code == 200
    assert "filename*=UTF-8''" in xlsx.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    header_at = next(i for i, row in enumerate(rows) if row[0] == "序号")
    header, summary = rows[header_at], rows[header_at + 1]
    assert header[5:7] == ["本期采购量（万元）", "累计采购量（万元）"]
    assert Decimal(str(summary[5])) == Decimal(body["period_wan"])
    assert Decimal(str(summary[6])) == Decimal(body["year_to_date_wan"])
    county_header = rows.index(["按产品来源县", *[None] * (len(rows[0]) - 1)])
    county_rows = rows[county_header + 2 : county_header + 2 + len(body["by_county"])]
    assert [(row[1], Decimal(str(row[3])), Decimal(str(row[5]))) for row in county_rows] == [
        (county["county_name"], Decimal(county["period_wan"]), Decimal(county["period_fen"]) / 100)
        for county in body["by_county"]
    ]
    total = rows[county_header + 2 + len(body["by_county"])]
    assert total[0] == "合计"
    assert Decimal(str(total[3])) == Decimal(body["period_wan"])

    assert text.content.startswith("\ufeff".encode())
    parsed = list(csv.reader(io.StringIO(text.content.decode("utf-8-sig"))))
    assert parsed[0][4] == "产品来源（县/区）"
    assert parsed[-1][4:8] == ["合计", "", body["period_wan"], body["year_to_date_wan"]]


# --- The province -------------------------------------------------------------------------------


def test_province_sees_every_school_late_list_rankings_and_counties(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    tea = certificate_of(seeded, "天柱剑毫(绿茶)")
    add_entry(shop_client, shop, certificate_number=tea, amount_fen=80_000)
    add_entry(
        shop_client,
        shop,
        user="province_admin",
        certificate_number=tea,
        amount_fen=5_000,
        occurred_on="2026-11-19",
    )
    submit(shop_client, shop, WEEK_1)
    headers = shop.headers["province_admin"]

    overview = shop_client.get(f"{API}/procurement/weeks/{WEEK_1}", headers=headers).json()
    late = shop_client.get(
        f"{API}/procurement/weeks/{WEEK_1}?late_only=true", headers=headers
    ).json()
    rankings = shop_client.get(f"{API}/procurement/weeks/{WEEK_1}/rankings", headers=headers)
    counties = shop_client.get(f"{API}/procurement/weeks/{WEEK_1}/counties", headers=headers)
    seen = shop_client.post(
        f"{API}/schools/{shop.world.a.school_id}/procurement/reports/{WEEK_1}/seen",
        headers=headers,
    )
    workbook = shop_client.get(f"{API}/procurement/weeks/{WEEK_1}/export", headers=headers)
    forbidden = shop_client.get(
        f"{API}/procurement/weeks/{WEEK_1}", headers=shop.headers["school_admin_a"]
    )

    with seeded() as session:
        school_count = session.scalar(sa.select(sa.func.count()).select_from(School))
    by_school = {row["school"]["id"]: row for row in overview["schools"]}
    assert len(by_school) == school_count
    mine = by_school[shop.world.a.school_id]
    assert (mine["status"], mine["period_fen"], mine["late"]) == ("submitted", 85_000, True)
    assert overview["submitted"] == 1
    # The week was due on 24 November: every other school is late and listed.
    assert len(late["schools"]) == school_count - 1
    assert shop.world.a.school_id not in {row["school"]["id"] for row in late["schools"]}
    undergraduate = rankings.json()["undergraduate"]
    assert undergraduate[0]["school"]["id"] == shop.world.a.school_id
    assert undergraduate[0]["rank"] == 1
    assert all(
        row["school"]["school_type"] == "vocational" for row in rankings.json()["vocational"]
    )
    assert counties.json()["counties"][0]["county_code"] == "340882"
    assert counties.json()["counties"][0]["year_to_date_fen"] == 85_000
    assert seen.json()["status"] == "seen"
    sheets = load_workbook(io.BytesIO(workbook.content)).sheetnames
    assert sheets == ["各校报送情况", "本科院校排名", "高职院校排名", "按产品来源县"]
    assert forbidden.status_code == 403


# --- Bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"channel": "cabinet"}, "body.channel"),
        ({"amount_fen": 12.5}, "body.amount_fen"),
        ({"amount_fen": 0}, "body.amount_fen"),
        ({"amount_fen": 10**13}, "body.amount_fen"),
        ({"product_name": "茶\x00叶"}, "body.product_name"),
        ({"quantity": "1.0001"}, "body.quantity"),
        ({"county_code": "34088"}, "body.county_code"),
        ({"occurred_on": "2026-02-30"}, "body.occurred_on"),
        ({"occurred_on": "2099-01-01"}, "body.occurred_on"),
        ({"voucher_file_id": 999}, "body.voucher_file_id"),
        ({"unknown": 1}, "body.unknown"),
    ],
)
def test_bad_entries_are_refused_with_the_field(
    shop_client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    overrides: dict[str, Any],
    field: str,
) -> None:
    response = shop_client.post(
        f"{API}/schools/{shop.world.a.school_id}/procurement/entries",
        json=entry(**overrides),
        headers=shop.headers["school_admin_a"],
    )

    assert response.status_code == 422, response.json()
    assert response.json()["details"][0]["field"] == field
    assert ledger_size(seeded) == 0
    with seeded() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ProcurementDailyTotal)) == 0


def test_ledger_scope(shop_client: TestClient, shop: Shop) -> None:
    path = f"{API}/schools/{shop.world.a.school_id}/procurement/entries"

    other_admin = shop_client.post(path, json=entry(), headers=shop.headers["school_admin_b"])
    operator = shop_client.get(path, headers=shop.headers["operator_a"])
    student = shop_client.get(path, headers=shop.headers["student"])
    anonymous = shop_client.get(path)

    assert other_admin.status_code == 404
    assert operator.status_code == 403
    assert student.status_code == 403
    assert anonymous.status_code == 401


def test_workbook_without_header_is_refused(shop_client: TestClient, shop: Shop) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["随便", "什么"])
    sheet.append([1, 2])
    buffer = io.BytesIO()
    workbook.save(buffer)

    response = import_file(shop_client, shop, "x.xlsx", buffer.getvalue())

    assert response.status_code == 422
    assert "表头缺少列" in response.json()["message"]


def test_audit_records_every_ledger_change(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    created = add_entry(shop_client, shop)
    shop_client.post(
        f"{API}/schools/{shop.world.a.school_id}/procurement/entries/{created['id']}/void",
        json={"reason": "金额有误"},
        headers=shop.headers["school_admin_a"],
    )

    with session_scope(seeded) as session:
        history = list_audit_entries(
            session, object_type="procurement_entry", object_id=created["id"]
        )
        assert [item.action for item in history] == ["ledger.entry.create", "ledger.entry.void"]
        assert history[0].after is not None
        assert history[0].after["amount_fen"] == 120_000
        assert history[1].actor_user_id == shop.world.a.admin_id


def test_download_name_is_safe_in_the_header(
    shop_client: TestClient, shop: Shop, seeded: sessionmaker[Session]
) -> None:
    with session_scope(seeded) as session:
        session.execute(
            sa.update(School)
            .where(School.id == shop.world.a.school_id)
            .values(name='安徽"大学\r\nX-Injected: 1')
        )

    response = shop_client.get(
        f"{API}/schools/{shop.world.a.school_id}/procurement/reports/{WEEK_1}/export",
        headers=shop.headers["school_admin_a"],
    )

    assert response.status_code == 200
    assert "x-injected" not in response.headers
    disposition = response.headers["content-disposition"]
    assert "\r" not in disposition
    assert disposition.startswith('attachment; filename="')
    assert "filename*=UTF-8''%E5%AE%89%E5%BE%BD%22" in disposition
