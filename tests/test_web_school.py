"""The school administrator's and the province's pages, in headless Chromium."""

import io
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from playwright.sync_api import Page
from sqlalchemy.orm import Session, sessionmaker

from browser_fixtures import live_server, sign_in, untranslated_texts
from fleet_server.app import create_app
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import session_scope
from fleet_server.models import Product, School
from fleet_server.models.base import utc_now
from fleet_server.reporting.periods import is_late, last_completed_week
from server_helpers import World

pytest_plugins = ["server_fixtures", "browser_fixtures"]

SCHOOL_PAGES = ["/school", "/school/ledger", "/school/import", "/school/report", "/school/plan"]
PROVINCE_PAGES = ["/province", "/province/rankings", "/province/counties", "/province/plans"]


@pytest.fixture
def base_url(settings: ServerSettings, engine: sa.Engine, world: World) -> Iterator[str]:
    with live_server(create_app(settings, engine=engine)) as url:
        yield url


@pytest.fixture
def certificate(seeded: sessionmaker[Session]) -> str:
    with seeded() as session:
        number = session.scalar(
            sa.select(Product.certificate_number).where(Product.name == "天柱剑毫(绿茶)")
        )
    assert number is not None
    return number


def fill_entry(page: Page, day: str, amount: str, certificate: str) -> None:
    page.fill("#occurred_on", day)
    page.select_option("#channel", "canteen")
    page.fill("#product_name", "天柱剑毫")
    page.fill("#certificate_number", certificate)
    page.fill("#county_code", "340824")  # the former code of 潜山
    page.fill("#supplier", "潜山市某茶叶专业合作社")
    page.fill("#quantity", "12.5")
    page.fill("#unit", "盒")
    page.fill("#amount_yuan", amount)
    page.fill("#voucher_ref", "FP-2026-001")


def test_school_enters_submits_and_downloads_the_report(
    page: Page, base_url: str, world: World, certificate: str
) -> None:
    week = last_completed_week(utc_now())
    day = (week.monday + timedelta(days=2)).isoformat()
    sign_in(page, base_url, "admin-ahu")

    page.goto(f"{base_url}/school/ledger")
    fill_entry(page, day, "12.345", certificate)
    page.click("form[action='/school/ledger'] button[type=submit]")
    amount_error = page.inner_text("[data-testid=error-amount_yuan]")
    kept_amount = page.input_value("#amount_yuan")
    kept_supplier = page.input_value("#supplier")

    page.fill("#amount_yuan", "1234.56")
    page.click("form[action='/school/ledger'] button[type=submit]")
    saved = page.inner_text("[data-testid=saved]")

    page.goto(f"{base_url}/school/report")
    shown_period = page.inner_text("[data-testid=period-wan]")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("[data-testid=submit-report]")
    page.wait_for_selector("[data-testid=submitted]")
    status = page.inner_text("[data-testid=report-status]")
    with page.expect_download() as download_info:
        page.click("[data-testid=download-xlsx]")
    workbook_path = download_info.value.path()
    api = page.request.get(
        f"{base_url}/api/v1/schools/{world.a.school_id}/procurement/reports/{week.monday}"
    ).json()

    assert amount_error == "请输入正数金额，最多两位小数"
    assert kept_amount == "12.345"
    assert kept_supplier == "潜山市某茶叶专业合作社"
    assert saved == "已保存：天柱剑毫"
    assert shown_period.split()[0] == "0.12"  # 1,234.56 yuan is 0.12 万元
    assert "已报送" in status
    assert api["status"] == "submitted"
    assert api["period_fen"] == 123_456
    sheet = load_workbook(io.BytesIO(workbook_path.read_bytes())).active
    assert sheet is not None
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    header_at = next(i for i, row in enumerate(rows) if row[0] == "序号")
    assert rows[header_at][5] == "本期采购量（万元）"
    assert Decimal(str(rows[header_at + 1][5])) == Decimal(api["period_wan"])
    county_at = next(i for i, row in enumerate(rows) if row[0] == "按产品来源县")
    assert rows[county_at + 2][1] == "潜山市"


def test_school_pages_in_english_have_no_chinese_labels(
    page: Page, base_url: str, world: World, certificate: str
) -> None:
    week = last_completed_week(utc_now())
    sign_in(page, base_url, "admin-ahu", lang="en")
    page.goto(f"{base_url}/school/ledger")
    fill_entry(page, (week.monday + timedelta(days=1)).isoformat(), "88.00", certificate)
    page.click("form[action='/school/ledger'] button[type=submit]")

    leftovers = {}
    for path in SCHOOL_PAGES:
        page.goto(f"{base_url}{path}")
        leftovers[path] = untranslated_texts(page)
    heading = page.inner_text("h1")

    assert leftovers == {path: [] for path in SCHOOL_PAGES}
    assert heading == "Placement plan"


def test_plan_form_keeps_bad_input_and_submits(
    page: Page, base_url: str, world: World, seeded: sessionmaker[Session]
) -> None:
    with session_scope(seeded) as session:
        session.execute(
            sa.update(School).where(School.id == world.a.school_id).values(enrollment=12_000)
        )
    sign_in(page, base_url, "admin-ahu")
    page.goto(f"{base_url}/school/plan")
    page.fill("#students_per_cabinet", "abc")
    page.click("button[value=preview]")
    error = page.inner_text("[data-testid=error-students_per_cabinet]")
    kept = page.input_value("#students_per_cabinet")

    page.fill("#students_per_cabinet", "1000")
    page.click("button[value=preview]")
    total = page.inner_text("[data-testid=plan-total]")
    page.click("[data-testid=submit-plan]")
    submitted = page.inner_text("[data-testid=plan-submitted]")

    assert error == "请输入 1 至 100000 之间的整数"
    assert kept == "abc"
    assert total == "12"
    assert submitted == "规划已报送：12 台"


def test_province_sees_the_week_in_both_languages(page: Page, base_url: str, world: World) -> None:
    sign_in(page, base_url, "province")
    page.goto(f"{base_url}/province")
    heading = page.inner_text("h1")
    schools = page.locator("[data-testid=schools] tbody tr").count()
    page.click("[data-testid=late-only]")
    late_rows = page.locator("[data-testid=schools] tbody tr").count()

    leftovers = {}
    for path in PROVINCE_PAGES:
        page.goto(f"{base_url}{path}?lang=en")
        leftovers[path] = untranslated_texts(page)

    assert heading == "全省面向采购周报"
    assert schools >= 100
    # The last completed week is past its due Tuesday only from Wednesday on.
    expected_late = schools if is_late(last_completed_week(utc_now()), None, utc_now()) else 0
    assert late_rows == expected_late
    assert leftovers == {path: [] for path in PROVINCE_PAGES}
