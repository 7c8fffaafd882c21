"""Fixtures for the purchase, wallet and ingest tests.

Test modules load this file with ``pytest_plugins = ["server_fixtures", "purchase_fixtures"]``.
``shop`` extends the two-school ``world`` with what a purchase needs: cabinet A in service,
online and keyed, a funded student wallet, and two catalog products with their counties.
"""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.app import create_app
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import session_scope
from fleet_server.messaging.publisher import RecordingPublisher
from fleet_server.models import Cabinet, CabinetServiceStatus, Product, Role
from purchase_helpers import (
    INITIAL_BALANCE_FEN,
    KEY_A_HEX,
    KEY_B_HEX,
    Shop,
    ShopProduct,
    fund_wallet,
)
from server_helpers import TEST_SECRET_KEY, TOKEN_TTL_S, World, add_user, bearer


def build_shop(world: World, factory: sessionmaker[Session]) -> Shop:
    """Put both cabinets of ``world`` in service, online and keyed, and fund two students."""
    with session_scope(factory) as session:
        for kiosk_id, key in ((world.a.kiosk_id, KEY_A_HEX), (world.b.kiosk_id, KEY_B_HEX)):
            cabinet = session.scalars(sa.select(Cabinet).where(Cabinet.kiosk_id == kiosk_id)).one()
            cabinet.service_status = CabinetServiceStatus.IN_SERVICE
            cabinet.online = True
            cabinet.hmac_key = key
        fund_wallet(session, world.student_id, INITIAL_BALANCE_FEN)
        poor = add_user(session, "student-poor", Role.STUDENT, school_id=world.a.school_id)
        fund_wallet(session, poor.id, 50)
        products = [
            ShopProduct(
                id=product.id,
                name=product.name,
                price_fen=product.price_fen,
                county_id=product.source_county.id,
                county_name=product.source_county.name,
                county_code=product.source_county.current_code,
            )
            for product in session.scalars(sa.select(Product).order_by(Product.id).limit(2))
        ]
        poor_id = poor.id
    headers = dict(world.headers)
    headers["student_poor"] = bearer(poor_id)
    return Shop(
        world=world,
        kiosk_id=world.a.kiosk_id,
        key=bytes.fromhex(KEY_A_HEX),
        other_kiosk_id=world.b.kiosk_id,
        student_id=world.student_id,
        poor_student_id=poor_id,
        products=products,
        headers=headers,
    )


@pytest.fixture
def shop(world: World, seeded: sessionmaker[Session]) -> Shop:
    return build_shop(world, seeded)


@pytest.fixture
def purchase_settings(database_url: str) -> ServerSettings:
    return ServerSettings(
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,
        access_token_ttl_s=TOKEN_TTL_S,
        purchase_hold_max_fen=3_000,
        purchase_min_balance_fen=100,
    )


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def shop_client(
    purchase_settings: ServerSettings, engine: sa.Engine, publisher: RecordingPublisher
) -> Iterator[TestClient]:
    app = create_app(purchase_settings, engine=engine, command_publisher=publisher)
    with TestClient(app) as test_client:
        yield test_client
