"""Fixtures for the fleet-server tests: a fresh database per test on SQLite and PostgreSQL.

Test modules load this file with ``pytest_plugins = ["server_fixtures"]``.

``database_url`` is parametrized over both backends, so every test that uses it (directly
or through ``engine``, ``client`` and the rest) runs twice. SQLite gets a new file in the
test's temporary directory; PostgreSQL gets a new schema in the database of the
``postgres_url`` fixture (tests/conftest.py), selected through the connection's
search_path and dropped after the test. No state is shared between tests.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.app import create_app
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import create_db_engine, create_session_factory, session_scope
from fleet_server.models import (
    Base,
    Building,
    Cabinet,
    LocationType,
    Operator,
    Placement,
    Role,
    School,
)
from fleet_server.services.seed import seed_reference_data
from server_helpers import TEST_SECRET_KEY, TOKEN_TTL_S, SchoolSite, World, add_user, bearer

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@contextmanager
def backend_database(
    request: pytest.FixtureRequest, backend: str, directory: Path
) -> Iterator[str]:
    """Yield the URL of a new, empty database on ``backend`` and drop it afterwards.

    SQLite gets a new file in ``directory``. PostgreSQL gets a new schema in the database of
    the ``postgres_url`` fixture, selected through the connection's search_path.
    """
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'zhigui.db'}"
        return

    server_url = make_url(request.getfixturevalue("postgres_url"))
    schema = f"test_{uuid.uuid4().hex}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield server_url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database that only this test uses."""
    with backend_database(request, request.param, tmp_path) as url:
        yield url


@pytest.fixture
def settings(database_url: str) -> ServerSettings:
    return ServerSettings(
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,
        access_token_ttl_s=TOKEN_TTL_S,
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """Engine on the test's database, with every table created from the models."""
    engine = create_db_engine(database_url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    return create_session_factory(engine)


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Session factory of a database holding the shipped reference data."""
    with session_scope(session_factory) as session:
        seed_reference_data(session)
    return session_factory


@pytest.fixture
def client(settings: ServerSettings, engine: sa.Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=engine)) as test_client:
        yield test_client


def _add_site(
    session: Session, school_name: str, kiosk_id: str, operator_id: int, admin_name: str
) -> SchoolSite:
    school_id = session.scalar(sa.select(School.id).where(School.name == school_name))
    assert school_id is not None, f"{school_name} is missing from the seed data"
    building = Building(
        school_id=school_id,
        name="学生公寓 1 号楼",
        location_type=LocationType.DORMITORY,
        capacity=1200,
        latitude_microdeg=31_842_136,
        longitude_microdeg=117_289_467,
    )
    placement = Placement(building=building, floor=1, description="一楼大厅东侧")
    cabinet = Cabinet(kiosk_id=kiosk_id, placement=placement, operator_id=operator_id)
    session.add_all([building, placement, cabinet])
    admin = add_user(session, admin_name, Role.SCHOOL_ADMIN, school_id=school_id)
    session.flush()
    return SchoolSite(
        school_id=school_id,
        building_id=building.id,
        placement_id=placement.id,
        kiosk_id=kiosk_id,
        admin_id=admin.id,
    )


def build_world(factory: sessionmaker[Session]) -> World:
    """Add two operators, a site per school and one user per role to a seeded database."""
    with session_scope(factory) as session:
        operator_a = Operator(name="皖北智柜运营有限公司", name_en="Wanbei Kiosk Operations")
        operator_b = Operator(name="江淮智能零售有限公司", name_en="Jianghuai Smart Retail")
        session.add_all([operator_a, operator_b])
        session.flush()
        site_a = _add_site(session, "安徽大学", "AH-10357-0001", operator_a.id, "admin-ahu")
        site_b = _add_site(session, "合肥工业大学", "AH-10359-0001", operator_b.id, "admin-hfut")
        world = World(
            a=site_a,
            b=site_b,
            operator_a_id=operator_a.id,
            operator_b_id=operator_b.id,
            operator_a_user_id=add_user(
                session, "operator-a", Role.OPERATOR, operator_id=operator_a.id
            ).id,
            operator_b_user_id=add_user(
                session, "operator-b", Role.OPERATOR, operator_id=operator_b.id
            ).id,
            province_admin_id=add_user(session, "province", Role.PROVINCE_ADMIN).id,
            student_id=add_user(session, "student", Role.STUDENT, school_id=site_a.school_id).id,
        )
    world.headers = {
        "province_admin": bearer(world.province_admin_id),
        "school_admin_a": bearer(world.a.admin_id),
        "school_admin_b": bearer(world.b.admin_id),
        "operator_a": bearer(world.operator_a_user_id),
        "operator_b": bearer(world.operator_b_user_id),
        "student": bearer(world.student_id),
    }
    return world


@pytest.fixture
def world(seeded: sessionmaker[Session]) -> World:
    return build_world(seeded)
