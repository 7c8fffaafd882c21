"""Weekly report and province rollup times over a year of procurement postings.

Run from the repository root:

    .venv/bin/python bench/bench_reports.py                       # SQLite in a temp dir
    .venv/bin/python bench/bench_reports.py --database-url URL    # an empty PostgreSQL database

Reports read only ``procurement_daily_totals``, so the benchmark fills that table through
the same ``post()`` call that ingest makes, in batches of --batch sales, without storing the
sales themselves. One school gets --cabinets cabinets selling --sales-per-day sales each on
each of --days days (500 x 20 x 365 = 3.65 million sales), one to three lines a sale over
the seeded catalog; every other seeded school gets --other-sales sales a day and one canteen
entry a week. It then times, through the HTTP API in-process, the big school's weekly report
(a live draft, the slowest case), its Excel export, and the province's overview of every
school, each the median of --repeat runs.
"""

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY / "tests"))

from fleet_server.app import create_app  # noqa: E402
from fleet_server.core.config import ServerSettings  # noqa: E402
from fleet_server.core.db import create_db_engine, create_session_factory, session_scope  # noqa: E402
from fleet_server.models import (  # noqa: E402
    Base,
    NotCountingReason,
    ProcurementChannel,
    ProcurementDailyTotal,
    Product,
    Role,
    School,
    SchoolType,
)
from fleet_server.services.procurement_posting import (  # noqa: E402
    COUNTS,
    Posting,
    current_county_codes,
    post,
)
from fleet_server.services.seed import seed_reference_data  # noqa: E402
from server_helpers import TEST_SECRET_KEY, add_user, bearer  # noqa: E402

REPORT_WEEK = date(2026, 11, 30)
UNPAID_SHARE = 0.005  # flagged sales whose payment covered nothing


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="an empty database (default: SQLite in a temp dir)")
    parser.add_argument("--cabinets", type=int, default=500)
    parser.add_argument("--sales-per-day", type=int, default=20, help="per cabinet")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--other-sales", type=int, default=1_000, help="per other school a day")
    parser.add_argument("--schools", type=int, default=120, help="at least this many schools")
    parser.add_argument("--batch", type=int, default=500, help="sales per post() call")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


def fill(session_factory, args: argparse.Namespace) -> tuple[int, int, int, float]:  # type: ignore[no-untyped-def]
    """Post the year of sales; return (big school id, sales, daily rows, seconds posting)."""
    rng = random.Random(args.seed)
    with session_scope(session_factory) as session:
        seed_reference_data(session)
        seeded = session.scalar(sa.select(sa.func.count()).select_from(School)) or 0
        for number in range(seeded, args.schools):
            session.add(
                School(
                    name=f"基准测试学院 {number + 1}",
                    school_type=SchoolType.VOCATIONAL,
                    city="合肥市",
                )
            )
    with session_factory() as session:
        schools = list(session.scalars(sa.select(School.id).order_by(School.id)))
        codes = current_county_codes(session)
        products = [
            (price, codes[county_id])
            for price, county_id in session.execute(
                sa.select(Product.price_fen, Product.source_county_id)
            )
        ]
    big_school, others = schools[0], schools[1:]
    last_day = REPORT_WEEK + timedelta(days=6)
    first_day = last_day - timedelta(days=args.days - 1)

    sales = 0
    posting_s = 0.0
    day = first_day
    while day <= last_day:
        batch: list[Posting] = []
        in_batch = 0
        for _ in range(args.cabinets * args.sales_per_day):
            unpaid = rng.random() < UNPAID_SHARE
            for _ in range(rng.randint(1, 3)):
                price, code = products[rng.randrange(len(products))]
                reason = NotCountingReason.NOT_PAID.value if unpaid else COUNTS
                batch.append(
                    Posting(big_school, day, ProcurementChannel.CABINET, code, reason, price, 1)
                )
            in_batch += 1
            if in_batch == args.batch:
                posting_s += _post(session_factory, batch)
                sales += in_batch
                batch, in_batch = [], 0
        if batch:
            posting_s += _post(session_factory, batch)
            sales += in_batch

        other: list[Posting] = []
        for school_id in others:
            for _ in range(args.other_sales):
                price, code = products[rng.randrange(len(products))]
                other.append(
                    Posting(school_id, day, ProcurementChannel.CABINET, code, COUNTS, price, 1)
                )
            if day.weekday() == 2:
                price, code = products[rng.randrange(len(products))]
                other.append(
                    Posting(
                        school_id, day, ProcurementChannel.CANTEEN, code, COUNTS, 100 * price, 1
                    )
                )
        _post(session_factory, other)
        day += timedelta(days=1)

    with session_factory() as session:
        rows = session.scalar(sa.select(sa.func.count()).select_from(ProcurementDailyTotal)) or 0
    return big_school, sales, rows, posting_s


def _post(session_factory, postings: list[Posting]) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    with session_scope(session_factory) as session:
        post(session, postings)
    return time.perf_counter() - started


def timed(repeat: int, call) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    samples = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def main() -> None:
    args = parse_args()
    workdir = tempfile.mkdtemp(prefix="zhigui-bench-reports-")
    url = args.database_url or f"sqlite:///{workdir}/bench.db"
    engine = create_db_engine(url)
    Base.metadata.create_all(engine)
    session_factory = create_session_factory(engine)

    started = time.perf_counter()
    big_school, sales, rows, posting_s = fill(session_factory, args)
    fill_s = time.perf_counter() - started
    with session_scope(session_factory) as session:
        admin = add_user(session, "bench-admin", Role.SCHOOL_ADMIN, school_id=big_school).id
        province = add_user(session, "bench-province", Role.PROVINCE_ADMIN).id
        school_count = session.scalar(sa.select(sa.func.count()).select_from(School))

    settings = ServerSettings(database_url=url, secret_key=TEST_SECRET_KEY)
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        report_path = f"/api/v1/schools/{big_school}/procurement/reports/{REPORT_WEEK}"

        def school_report() -> dict:  # type: ignore[type-arg]
            response = client.get(report_path, headers=bearer(admin))
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

        def export() -> int:
            response = client.get(f"{report_path}/export", headers=bearer(admin))
            assert response.status_code == 200, response.text
            return len(response.content)

        def rollup() -> dict:  # type: ignore[type-arg]
            response = client.get(
                f"/api/v1/procurement/weeks/{REPORT_WEEK}", headers=bearer(province)
            )
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

        report_s, report = timed(args.repeat, school_report)
        export_s, _ = timed(args.repeat, export)
        rollup_s, overview = timed(args.repeat, rollup)

    assert isinstance(report, dict)
    assert isinstance(overview, dict)
    print(f"backend: {engine.dialect.name}; python {platform.python_version()}")
    print(
        f"sales posted for the big school: {sales:,}; schools: {school_count}; "
        f"daily total rows: {rows:,}"
    )
    print(
        f"filling: {fill_s:.1f} s, of which post() {posting_s:.1f} s "
        f"({posting_s / sales * 1e6:.1f} µs a sale for the big school's batches)"
    )
    print(
        f"school weekly report (draft, HTTP): median {report_s * 1000:.0f} ms; "
        f"本期 {report['period_wan']} 万元, 累计 {report['year_to_date_wan']} 万元"
    )
    print(f"school report Excel export: median {export_s * 1000:.0f} ms")
    print(
        f"province overview of {len(overview['schools'])} schools (all drafts, HTTP): "
        f"median {rollup_s * 1000:.0f} ms"
    )
    engine.dispose()


if __name__ == "__main__":
    main()
