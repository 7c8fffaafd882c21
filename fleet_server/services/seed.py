"""Reference data shipped with the server: poverty counties, schools and sample products.

The CSV files in fleet_server/data come from public sources described in the README
there. Seeding only inserts rows that are missing, keyed by division code, school name
and certificate number, so running it again changes nothing and never overwrites an
edit made through the API.

Rules applied while seeding:

- School type: a name containing 职业 (which covers 职业技术) or 高等专科 is a vocational
  school (高职, including 高等专科学校); every other name is undergraduate (本科).
- Designated counties (对接贫困县) are set only for schools inserted by the same run.
- Products get sample values: certificate number SAMPLE-<county code>-<nnn> (nnn counts
  the county's products in file order), a package weight from the file or, when it has
  none, from SAMPLE_PACKAGE_GRAMS, a tolerance of 2 % (at least 5 g), and a price from
  SAMPLE_PRICE_FEN_PER_KG. All are marked is_sample.
"""

import csv
import io
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date
from importlib import resources

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.models import County, CountyCode, CountyLevel, Product, School, SchoolType
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit

logger = logging.getLogger(__name__)

DATA_PACKAGE = "fleet_server.data"
VOCATIONAL_NAME_MARKERS = ("职业", "高等专科")

# Sample package weight in grams by the first part of the category, for products whose
# source row gives none. Made-up values for demonstration.
SAMPLE_PACKAGE_GRAMS = {
    "茶叶": 250,
    "蔬菜": 500,
    "粮油": 2500,
    "菌类": 250,
    "水果": 2500,
    "水产": 1000,
    "肉禽": 1000,
    "加工食品": 500,
    "手工艺品": 1500,
    "干货": 250,
    "中药材": 250,
}
# Sample retail price in fen per kilogram by the first part of the category. Made-up
# values for demonstration, because the source data has no retail prices.
SAMPLE_PRICE_FEN_PER_KG = {
    "茶叶": 40_000,
    "蔬菜": 1_200,
    "粮油": 800,
    "菌类": 20_000,
    "水果": 1_600,
    "水产": 8_000,
    "肉禽": 6_000,
    "加工食品": 4_000,
    "手工艺品": 10_000,
    "干货": 8_000,
    "中药材": 30_000,
}
SAMPLE_TOLERANCE_PERCENT = 2
SAMPLE_MIN_TOLERANCE_G = 5
SAMPLE_MIN_PRICE_FEN = 100
SAMPLE_VALID_FROM = date(2021, 1, 1)
SAMPLE_VALID_UNTIL = date(2030, 12, 31)


@dataclass
class SeedReport:
    """Number of rows each table gained in one seeding run."""

    counties: int = 0
    county_codes: int = 0
    schools: int = 0
    designations: int = 0
    products: int = 0

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


def read_data_file(name: str) -> Iterator[dict[str, str]]:
    """Yield the rows of a CSV file in fleet_server/data as dicts keyed by header."""
    text = resources.files(DATA_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    yield from csv.DictReader(io.StringIO(text, newline=""))


def school_type_from_name(name: str) -> SchoolType:
    if any(marker in name for marker in VOCATIONAL_NAME_MARKERS):
        return SchoolType.VOCATIONAL
    return SchoolType.UNDERGRADUATE


def sample_certificate_number(county_code: str, sequence: int) -> str:
    return f"SAMPLE-{county_code}-{sequence:03d}"


def sample_package_grams(category: str, listed_grams: str) -> int:
    if listed_grams:
        return int(listed_grams)
    return SAMPLE_PACKAGE_GRAMS[category.split("/")[0]]


def sample_tolerance_g(unit_weight_g: int) -> int:
    return max(SAMPLE_MIN_TOLERANCE_G, unit_weight_g * SAMPLE_TOLERANCE_PERCENT // 100)


def sample_price_fen(category: str, unit_weight_g: int) -> int:
    """Return a sample price in fen, rounded to whole jiao (10 fen)."""
    per_kg = SAMPLE_PRICE_FEN_PER_KG[category.split("/")[0]]
    price = round(per_kg * unit_weight_g / 1000 / 10) * 10
    return max(SAMPLE_MIN_PRICE_FEN, price)


def seed_reference_data(session: Session, *, actor: Actor | None = None) -> SeedReport:
    """Insert the missing reference rows and return how many each table gained.

    Records one audit entry when anything was inserted. A run that inserts nothing
    leaves the database unchanged.
    """
    actor = actor or Actor.system("seed")
    report = SeedReport()
    _seed_counties(session, report)
    _seed_schools(session, report)
    _seed_products(session, report)
    session.flush()
    if report.total:
        record_audit(
            session,
            actor=actor,
            action="reference_data.seed",
            object_type="reference_data",
            object_id="fleet_server.data",
            after=asdict(report),
        )
    logger.info("reference data seeded: %s", asdict(report))
    return report


def _seed_counties(session: Session, report: SeedReport) -> None:
    known_codes = set(session.scalars(select(CountyCode.code)))
    for row in read_data_file("poverty_counties.csv"):
        if row["division_code"] in known_codes:
            continue
        county = County(
            name=row["name"],
            name_en=row["name_en"],
            city=row["city"],
            level=CountyLevel(row["level"]),
            level_derived=row["level_derived"] == "true",
        )
        county.codes.append(
            CountyCode(
                code=row["division_code"],
                is_current=True,
                name_then=row["name"],
                city_then=row["city"],
                replaced_in_year=None,
            )
        )
        session.add(county)
        known_codes.add(row["division_code"])
        report.counties += 1
        report.county_codes += 1
    session.flush()

    for row in read_data_file("county_former_codes.csv"):
        if row["former_code"] in known_codes:
            continue
        county_id = session.scalar(
            select(CountyCode.county_id).where(CountyCode.code == row["current_code"])
        )
        if county_id is None:
            raise LookupError(
                f"county_former_codes.csv names current code {row['current_code']}, "
                "which poverty_counties.csv does not contain"
            )
        session.add(
            CountyCode(
                code=row["former_code"],
                county_id=county_id,
                is_current=False,
                name_then=row["name_then"],
                city_then=row["city_then"],
                replaced_in_year=int(row["replaced_in_year"]),
            )
        )
        known_codes.add(row["former_code"])
        report.county_codes += 1
    session.flush()


def _county_by_code(session: Session, code: str) -> County:
    county = session.scalar(
        select(County)
        .join(CountyCode, CountyCode.county_id == County.id)
        .where(CountyCode.code == code)
    )
    if county is None:
        raise LookupError(f"reference data names county code {code}, which is not seeded")
    return county


def _seed_schools(session: Session, report: SeedReport) -> None:
    known_names = set(session.scalars(select(School.name)))
    inserted: dict[str, School] = {}
    for row in read_data_file("universities.csv"):
        if row["name"] in known_names:
            continue
        school = School(
            name=row["name"],
            name_en=row["name_en"] or None,
            school_type=school_type_from_name(row["name"]),
            city=row["city"],
            enrollment=int(row["enrollment"]) if row["enrollment"] else None,
            enrollment_as_of=row["enrollment_as_of"] or None,
            staff_count=None,
        )
        session.add(school)
        inserted[school.name] = school
        known_names.add(school.name)
        report.schools += 1

    for row in read_data_file("school_designations.csv"):
        new_school = inserted.get(row["school_name"])
        if new_school is None:
            continue
        county = _county_by_code(session, row["county_code"])
        if county not in new_school.designated_counties:
            new_school.designated_counties.append(county)
            report.designations += 1
    session.flush()


def _seed_products(session: Session, report: SeedReport) -> None:
    known_certificates = set(session.scalars(select(Product.certificate_number)))
    sequence_by_county: Counter[str] = Counter()
    for row in read_data_file("products.csv"):
        county_code = row["county_code"]
        sequence_by_county[county_code] += 1
        certificate_number = sample_certificate_number(county_code, sequence_by_county[county_code])
        if certificate_number in known_certificates:
            continue
        unit_weight_g = sample_package_grams(row["category"], row["package_grams"])
        session.add(
            Product(
                certificate_number=certificate_number,
                name=row["name"],
                name_en=row["name_en"] or None,
                supplier=None,
                source_county=_county_by_code(session, county_code),
                category=row["category"],
                unit_weight_g=unit_weight_g,
                weight_tolerance_g=sample_tolerance_g(unit_weight_g),
                price_fen=sample_price_fen(row["category"], unit_weight_g),
                valid_from=SAMPLE_VALID_FROM,
                valid_until=SAMPLE_VALID_UNTIL,
                is_sample=True,
            )
        )
        known_certificates.add(certificate_number)
        report.products += 1
    session.flush()
