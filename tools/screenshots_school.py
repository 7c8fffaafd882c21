"""Take the screenshots of the school administrator's and the province's pages.

Run from the repository root (needs Debian's chromium and a Chinese font such as
fonts-wqy-zenhei for the pictures to show Chinese):

    .venv/bin/python tools/screenshots_school.py [--out docs/screenshots]

It fills a temporary SQLite database with the seeded reference data, two school
administrators, a province administrator, ledger entries of several channels, and eight
weeks of cabinet sales posted the way ingest posts them, submits one school's last report,
then serves the pages on a loopback port and saves one PNG per page.
"""

import argparse
import random
import sys
import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY / "tests"))

from playwright.sync_api import sync_playwright  # noqa: E402

from browser_fixtures import CHROMIUM_ARGS, live_server  # noqa: E402
from fleet_server.app import create_app  # noqa: E402
from fleet_server.core.config import ServerSettings  # noqa: E402
from fleet_server.core.db import create_db_engine, create_session_factory, session_scope  # noqa: E402
from fleet_server.models import (  # noqa: E402
    Base,
    Building,
    EntrySource,
    LocationType,
    ProcurementChannel,
    Product,
    Role,
    School,
)
from fleet_server.models.base import utc_now  # noqa: E402
from fleet_server.reporting.periods import last_completed_week  # noqa: E402
from fleet_server.services.access import Actor  # noqa: E402
from fleet_server.services.procurement_ledger import EntryInput, add_entries  # noqa: E402
from fleet_server.services.procurement_posting import (  # noqa: E402
    COUNTS,
    Posting,
    current_county_codes,
    post,
)
from fleet_server.services.procurement_reports import YearStart, submit_report  # noqa: E402
from fleet_server.services.seed import seed_reference_data  # noqa: E402
from server_helpers import TEST_PASSWORD, TEST_SECRET_KEY, add_user  # noqa: E402

PAGES = [
    ("school-admin", "/school", "school-overview"),
    ("school-admin", "/school/ledger", "school-ledger"),
    ("school-admin", "/school/report", "school-report"),
    ("school-admin", "/school/plan", "school-plan"),
    ("province", "/province", "province-week"),
    ("province", "/province/rankings", "province-rankings"),
    ("province", "/province/plans", "province-plans"),
]


def fill(session_factory) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    with session_scope(session_factory) as session:
        seed_reference_data(session)
        schools = list(session.scalars(sa.select(School).order_by(School.id).limit(12)))
        school = next(item for item in schools if item.name == "安徽大学")
        admin = add_user(session, "school-admin", Role.SCHOOL_ADMIN, school_id=school.id)
        add_user(session, "province", Role.PROVINCE_ADMIN)
        for number in range(1, 7):
            session.add(
                Building(
                    school_id=school.id,
                    name=f"学生公寓 {number} 号楼",
                    location_type=LocationType.DORMITORY,
                    capacity=900 + 50 * number,
                )
            )
        for number, seats in enumerate((1_400, 800), start=1):
            session.add(
                Building(
                    school_id=school.id,
                    name=f"第 {number} 学生食堂",
                    location_type=LocationType.CANTEEN,
                    capacity=seats,
                )
            )
        codes = current_county_codes(session)
        products = list(session.scalars(sa.select(Product)))
        last = last_completed_week(utc_now())
        start = last.monday - timedelta(weeks=7)
        for day_number in range(7 * 8):
            day = start + timedelta(days=day_number)
            postings = []
            for item in schools:
                for _ in range(rng.randint(20, 60)):
                    product = rng.choice(products)
                    postings.append(
                        Posting(
                            item.id,
                            day,
                            ProcurementChannel.CABINET,
                            codes[product.source_county_id],
                            COUNTS,
                            product.price_fen,
                            1,
                        )
                    )
            post(session, postings)
        actor = Actor.for_user(admin)
        tea = next(product for product in products if product.name == "天柱剑毫(绿茶)")
        entries = [
            EntryInput(
                ProcurementChannel.CANTEEN,
                last.monday + timedelta(days=1),
                "天柱剑毫",
                tea.certificate_number,
                "340824",
                None,
                "潜山市天柱山茶业专业合作社",
                quantity=Decimal("40"),
                unit="盒",
                amount_fen=480_000,
                voucher_ref="FP-2026-1188",
            ),
            EntryInput(
                ProcurementChannel.UNION_WELFARE,
                last.monday + timedelta(days=3),
                "工会节日慰问大米",
                None,
                "341524",
                "金寨县",
                "金寨县某粮油公司",
                quantity=Decimal("200"),
                unit="袋",
                amount_fen=1_260_000,
                voucher_ref="FP-2026-1201",
            ),
        ]
        add_entries(
            session, actor=actor, school_id=school.id, entries=entries, source=EntrySource.FORM
        )
        submit_report(
            session, actor=actor, school_id=school.id, week=last.previous(), year=YearStart()
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="zhigui-screenshots-")
    url = f"sqlite:///{workdir}/screens.db"
    engine = create_db_engine(url)
    Base.metadata.create_all(engine)
    fill(create_session_factory(engine))
    app = create_app(ServerSettings(database_url=url, secret_key=TEST_SECRET_KEY), engine=engine)

    with live_server(app) as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        for username in ("school-admin", "province"):
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
            page = context.new_page()
            page.goto(f"{base_url}/login")
            page.fill("#username", username)
            page.fill("#password", TEST_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            for user, path, name in PAGES:
                if user != username:
                    continue
                page.goto(f"{base_url}{path}")
                page.screenshot(path=str(args.out / f"{name}.png"), full_page=False)
                print(f"saved {args.out / f'{name}.png'}")
            context.close()
        browser.close()
    engine.dispose()


if __name__ == "__main__":
    main()
