"""Property-based API test: schemathesis generates requests for every documented operation.

Each operation becomes one test item per backend. Schemathesis runs its example, coverage
(boundary and invalid values) and fuzzing phases. Every generated request is sent to the app
as several roles, and for operations with path parameters once more with the ids of objects
that exist. No response may be a server error. Each must match the OpenAPI description: a
documented status code, the documented content type and headers, and a body that fits the
documented schema.

Each backend has one database for the whole module, so objects that one operation creates
are there for the next. Schemathesis' pytest fixture loader (``schemathesis.pytest.
from_fixture``) fails on pytest 9.2, so the schema is loaded from an app made at import
time, and each request goes to the test database's app through ``case.call(app=...)``.
"""

import importlib
import itertools
import pkgutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.orm import Session, sessionmaker

import fleet_server.api.routes as routes_package
from fleet_server.api.routes import API_PREFIX
from fleet_server.app import create_app
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import create_db_engine, create_session_factory, session_scope
from fleet_server.ingest.store import BatchStore
from fleet_server.messaging.publisher import RecordingPublisher
from fleet_server.models import Alert, Base
from fleet_server.services.monitoring import handle_event
from fleet_server.services.seed import seed_reference_data
from kiosk_agent.contract import EventType
from operations_helpers import event, save_layout
from purchase_fixtures import build_shop
from purchase_helpers import Shop, current_code, received, sale_record
from server_fixtures import BACKENDS, backend_database, build_world
from server_helpers import TEST_SECRET_KEY, TOKEN_TTL_S

# Fuzzing examples per operation. The example and coverage phases add their own cases, and
# with 10 the module took about a minute per backend on a shared 2-core machine.
MAX_EXAMPLES = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class FuzzTarget:
    """The app on the module's database, a token per role and ids of existing objects."""

    app: FastAPI
    headers: dict[str, dict[str, str]]
    path_ids: dict[str, Any] = field(default_factory=dict)


def _add_activity(shop: Shop, app: FastAPI, factory: sessionmaker[Session]) -> dict[str, Any]:
    """Add a planogram, a settled purchase and an open alert; return their ids."""
    tea, crisps = shop.products
    with session_scope(factory) as session:
        save_layout(session, shop.kiosk_id, (0, 20, [tea.id]), (1, 20, [crisps.id]))

    with TestClient(app) as client:
        response = client.post(
            "/api/v1/purchases",
            json={"kiosk_id": shop.kiosk_id, "code": current_code(shop)},
            headers=shop.headers["student"],
        )
    assert response.status_code == 201, response.text
    purchase_id = uuid.UUID(response.json()["id"])
    # A settled purchase ends its event stream at once; an open one would stream for minutes.
    record = sale_record(shop.kiosk_id, purchase_id, [(tea, 1, tea.price_fen, 0)])
    BatchStore(factory).commit([received(record)])

    with session_scope(factory) as session:
        handle_event(session, event(shop.kiosk_id, EventType.DOOR_FORCED, record.recorded_at))
    with factory() as session:
        alert_id = session.scalar(sa.select(Alert.id))
    assert alert_id is not None

    world = shop.world
    with TestClient(app) as client:
        admin = shop.headers["school_admin_a"]
        ledger_path = f"/api/v1/schools/{world.a.school_id}/procurement"
        voucher = client.post(
            f"{ledger_path}/vouchers",
            files={"file": ("voucher.png", b"\x89PNG\r\n\x1a\n" + bytes(32), "image/png")},
            headers=admin,
        )
        entry = client.post(
            f"{ledger_path}/entries",
            json={
                "channel": "canteen",
                "occurred_on": "2026-11-18",
                "product_name": "大米",
                "county_code": tea.county_code,
                "supplier": "合作社",
                "quantity": "10",
                "unit": "袋",
                "amount_fen": 10_000,
                "voucher_ref": "FP-1",
                "voucher_file_id": voucher.json()["id"],
            },
            headers=admin,
        )
    assert entry.status_code == 201, entry.text

    return {
        "school_id": world.a.school_id,
        "building_id": world.a.building_id,
        "placement_id": world.a.placement_id,
        "operator_id": world.operator_a_id,
        "kiosk_id": world.a.kiosk_id,
        "product_id": tea.id,
        "user_id": world.student_id,
        "code": tea.county_code,
        "purchase_id": str(purchase_id),
        "sale_id": str(record.sale_id),
        "alert_id": alert_id,
        "entry_id": entry.json()["id"],
        "voucher_id": voucher.json()["id"],
        "week": "2026-11-16",
    }


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    with backend_database(request, request.param, tmp_path_factory.mktemp("fuzz")) as url:
        engine = create_db_engine(url)
        Base.metadata.create_all(engine)
        factory = create_session_factory(engine)
        with session_scope(factory) as session:
            seed_reference_data(session)
        shop = build_shop(build_world(factory), factory)
        settings = ServerSettings(
            database_url=url, secret_key=TEST_SECRET_KEY, access_token_ttl_s=TOKEN_TTL_S
        )
        app = create_app(settings, engine=engine, command_publisher=RecordingPublisher())
        path_ids = _add_activity(shop, app, factory)
        yield FuzzTarget(app=app, headers={"anonymous": {}, **shop.headers}, path_ids=path_ids)
        engine.dispose()


# The OpenAPI description does not depend on the database, so an app that never connects
# is enough to load it.
schema = schemathesis.openapi.from_dict(
    create_app(ServerSettings(database_url="sqlite://")).openapi(),
    config=schemathesis.Config.from_dict({"generation": {"max-examples": MAX_EXAMPLES}}),
)


# Each generated request goes to province_admin, who passes every role check and so
# reaches the body and the database, and to one other role in turn. With ids of existing
# objects it goes to every signed-in role, because scope rules then decide the outcome.
OTHER_ROLES = itertools.cycle(("anonymous", "student", "operator_a", "school_admin_a"))
SIGNED_IN_ROLES = ("student", "operator_a", "school_admin_a", "province_admin")


def call_and_check(case: schemathesis.Case, target: FuzzTarget, role: str) -> None:
    response = case.call(app=target.app, headers=target.headers[role])
    case.validate_response(response, checks=CHECKS)


@schema.parametrize()
def test_api_conforms_to_openapi(case: schemathesis.Case, fuzz_target: FuzzTarget) -> None:
    call_and_check(case, fuzz_target, "province_admin")
    call_and_check(case, fuzz_target, next(OTHER_ROLES))

    if not case.path_parameters:
        return
    case.path_parameters = {name: fuzz_target.path_ids[name] for name in case.path_parameters}
    for role in SIGNED_IN_ROLES:
        call_and_check(case, fuzz_target, role)


def test_every_route_documented_with_summary() -> None:
    operations = create_app(ServerSettings(database_url="sqlite://")).openapi()["paths"]
    modules = [
        importlib.import_module(f"{routes_package.__name__}.{module.name}")
        for module in pkgutil.iter_modules(routes_package.__path__)
    ]
    routes = [
        (API_PREFIX + route.path, method.lower(), route.include_in_schema)
        for module in modules
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    ]

    assert len(routes) >= len(operations) - 1  # all but /health come from the route modules
    for path, method, include_in_schema in routes:
        assert include_in_schema, (method, path)
        assert method in operations.get(path, {}), (method, path)
        assert operations[path][method].get("summary"), (method, path)
