"""Reference data: counties with their old codes, schools, designations and sample products."""

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.db import session_scope
from fleet_server.models import (
    AuditEntry,
    County,
    CountyCode,
    CountyLevel,
    Product,
    School,
    SchoolType,
    school_designated_counties,
)
from fleet_server.services.seed import (
    SAMPLE_PACKAGE_GRAMS,
    read_data_file,
    school_type_from_name,
    seed_reference_data,
)

pytest_plugins = ["server_fixtures"]

TABLES = [County, CountyCode, School, Product, AuditEntry]


def count_rows(session: Session) -> dict[str, int]:
    counts = {
        model.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
        for model in TABLES
    }
    counts["school_designated_counties"] = (
        session.scalar(sa.select(sa.func.count()).select_from(school_designated_counties)) or 0
    )
    return counts


def test_seed_inserts_reference_data(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        report = seed_reference_data(session)

    assert report.counties == 31
    assert report.county_codes == 33
    assert report.schools == 119
    assert report.designations == 12
    assert report.products == 42
    with session_factory() as session:
        levels = session.execute(
            sa.select(County.level, sa.func.count()).group_by(County.level)
        ).all()
        assert dict(levels) == {CountyLevel.NATIONAL: 20, CountyLevel.PROVINCIAL: 11}


def test_seed_twice_changes_nothing(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        seed_reference_data(session)
    with session_factory() as session:
        counts_after_first = count_rows(session)
        product_rows_first = session.execute(
            sa.select(Product.certificate_number, Product.price_fen, Product.unit_weight_g)
        ).all()

    with session_scope(session_factory) as session:
        second = seed_reference_data(session)

    assert second.total == 0
    with session_factory() as session:
        assert count_rows(session) == counts_after_first
        product_rows_second = session.execute(
            sa.select(Product.certificate_number, Product.price_fen, Product.unit_weight_g)
        ).all()
        assert sorted(product_rows_second) == sorted(product_rows_first)
    assert counts_after_first["audit_log"] == 1


def test_seed_keeps_api_edits(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        seed_reference_data(session)
    with session_scope(session_factory) as session:
        school = session.scalars(sa.select(School).where(School.name == "安徽大学")).one()
        school.enrollment = 40000
        school.designated_counties = []

    with session_scope(session_factory) as session:
        seed_reference_data(session)

    with session_factory() as session:
        school = session.scalars(sa.select(School).where(School.name == "安徽大学")).one()
        assert school.enrollment == 40000
        assert school.designated_counties == []


def test_seeded_schools_with_enrollment(seeded: sessionmaker[Session]) -> None:
    with seeded() as session:
        known = dict(
            session.execute(
                sa.select(School.name, School.enrollment).where(School.enrollment.is_not(None))
            ).all()
        )
        ahu = session.scalars(sa.select(School).where(School.name == "安徽大学")).one()

    assert len(known) == 23
    assert known["安徽大学"] == 35812
    assert known["中国科学技术大学"] == 27005
    assert known["亳州职业技术学院"] == 7500
    assert ahu.enrollment_as_of == "2022"
    assert ahu.name_en == "Anhui University"
    assert ahu.school_type is SchoolType.UNDERGRADUATE


def test_school_type_rule() -> None:
    assert school_type_from_name("安徽职业技术学院") is SchoolType.VOCATIONAL
    assert school_type_from_name("安徽国防科技职业学院") is SchoolType.VOCATIONAL
    assert school_type_from_name("安徽医学高等专科学校") is SchoolType.VOCATIONAL
    assert school_type_from_name("桐城师范高等专科学校") is SchoolType.VOCATIONAL
    assert school_type_from_name("安徽大学") is SchoolType.UNDERGRADUATE
    assert school_type_from_name("合肥师范学院") is SchoolType.UNDERGRADUATE
    assert school_type_from_name("安徽医科大学临床医学院") is SchoolType.UNDERGRADUATE


def test_seeded_school_types_follow_rule(seeded: sessionmaker[Session]) -> None:
    with seeded() as session:
        rows = session.execute(sa.select(School.name, School.school_type)).all()

    assert len(rows) == 119
    for name, school_type in rows:
        assert school_type is school_type_from_name(name), name
    vocational = sum(1 for _, school_type in rows if school_type is SchoolType.VOCATIONAL)
    assert vocational == sum(
        1
        for row in read_data_file("universities.csv")
        if "职业" in row["name"] or "高等专科" in row["name"]
    )


def test_seeded_designations_use_current_codes(seeded: sessionmaker[Session]) -> None:
    with seeded() as session:
        hfut = session.scalars(sa.select(School).where(School.name == "合肥工业大学")).one()
        names = sorted(county.name for county in hfut.designated_counties)
        codes = sorted(county.current_code for county in hfut.designated_counties)

    assert names == sorted(["利辛县", "灵璧县", "界首市", "金安区"])
    assert codes == ["341282", "341323", "341502", "341623"]


def test_seeded_products_are_labelled_samples(seeded: sessionmaker[Session]) -> None:
    with seeded() as session:
        products = list(session.scalars(sa.select(Product).order_by(Product.id)))
        pear = session.scalars(sa.select(Product).where(Product.name == "砀山酥梨")).one()
        pear_county = pear.source_county.name
        chicken = session.scalars(sa.select(Product).where(Product.name == "淮南麻黄鸡")).one()
        chicken_county = chicken.source_county.name

    assert len(products) == 42
    for product in products:
        assert product.is_sample, product.name
        assert product.certificate_number.startswith("SAMPLE-"), product.name
        assert type(product.price_fen) is int
        assert product.price_fen > 0
        assert product.price_fen % 10 == 0
        assert type(product.unit_weight_g) is int
        assert 0 <= product.weight_tolerance_g < product.unit_weight_g
    assert pear.certificate_number == "SAMPLE-341321-001"
    assert pear.unit_weight_g == 2500
    assert pear_county == "砀山县"
    # The source lists 淮南市 with 寿县 as the poverty county inside it.
    assert chicken_county == "寿县"
    assert chicken.unit_weight_g == SAMPLE_PACKAGE_GRAMS["肉禽"]
