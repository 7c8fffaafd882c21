"""Planograms: decodability check, versions, signed commands, resend, scope."""

from collections.abc import Iterator
from datetime import date

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.app import create_app
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import session_scope
from fleet_server.messaging.publisher import RecordingPublisher
from fleet_server.models import Planogram, Product
from fleet_server.services.audit import list_audit_entries
from fleet_server.services.planograms import _one_per_shelf_first, resend_planogram
from kiosk_agent.contract import PlanogramCommand, parse_command
from kiosk_agent.decoding import MisplacedConflict
from kiosk_agent.signing import compute_signature
from operations_helpers import add_product, cabinet, give_key, save_layout
from server_helpers import World

pytest_plugins = ["server_fixtures"]


class Catalog:
    """Products with pack weights chosen for the decodability check."""

    def __init__(self, session: Session) -> None:
        self.tea = add_product(session, "岳西翠兰", weight_g=100, tolerance_g=1, price_fen=3500)
        self.rice = add_product(session, "霍邱大米", weight_g=200, tolerance_g=1, price_fen=2500)
        self.honey = add_product(session, "金寨蜂蜜", weight_g=260, tolerance_g=2, price_fen=4800)
        self.chestnut = add_product(session, "舒城板栗", weight_g=45, tolerance_g=1)
        self.expired = add_product(
            session, "过期产品", weight_g=500, tolerance_g=5, valid_until=date(2021, 12, 31)
        )
        self.ids = {
            name: product.id for name, product in vars(self).items() if isinstance(product, Product)
        }


@pytest.fixture
def catalog(world: World, seeded: sessionmaker[Session]) -> dict[str, int]:
    with session_scope(seeded) as session:
        return Catalog(session).ids


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def key(world: World, seeded: sessionmaker[Session]) -> bytes:
    with session_scope(seeded) as session:
        return give_key(session, world.a.kiosk_id)


@pytest.fixture
def api(
    settings: ServerSettings, engine: sa.Engine, publisher: RecordingPublisher
) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=engine, command_publisher=publisher)) as client:
        yield client


def planogram_url(kiosk_id: str) -> str:
    return f"/api/v1/cabinets/{kiosk_id}/planogram"


def test_save_publishes_signed_command(
    api: TestClient,
    world: World,
    catalog: dict[str, int],
    key: bytes,
    publisher: RecordingPublisher,
) -> None:
    body = {
        "shelves": [
            {
                "shelf": 0,
                "capacity_items": 20,
                "products": [
                    {"product_id": catalog["tea"], "price_fen": 3200},
                    {"product_id": catalog["honey"]},
                ],
            },
            {"shelf": 1, "capacity_items": 12, "products": [{"product_id": catalog["rice"]}]},
        ]
    }

    response = api.put(
        planogram_url(world.a.kiosk_id), json=body, headers=world.headers["operator_a"]
    )

    assert response.status_code == 200, response.json()
    saved = response.json()
    assert saved["published"] is True
    assert saved["planogram"]["version"] == 1
    assert saved["planogram"]["published_at"] is not None
    assert len(publisher.commands) == 1
    command = publisher.commands[0]
    assert isinstance(command, PlanogramCommand)
    assert command.kiosk_id == world.a.kiosk_id
    assert command.version == 1
    assert command.signature == compute_signature(command, key)
    assert (command.expires_at - command.issued_at).total_seconds() == 3600
    shelf0 = command.shelves[0]
    assert shelf0.capacity_items == 20
    tea, honey = shelf0.products
    assert tea.product_id == str(catalog["tea"])
    assert tea.unit_weight_mg == 100_000
    assert tea.tolerance_mg == 1_000
    assert tea.price_fen == 3200
    assert tea.name == "岳西翠兰"
    assert honey.price_fen == 4800
    assert command.shelves[1].products[0].product_id == str(catalog["rice"])
    # The published bytes parse as a command on the agent's side.
    assert parse_command(command.model_dump_json().encode()) == command


def test_ambiguous_shelf_rejected_with_each_conflict(
    api: TestClient,
    world: World,
    catalog: dict[str, int],
    key: bytes,
    publisher: RecordingPublisher,
) -> None:
    body = {
        "shelves": [
            {"shelf": 1, "capacity_items": 10, "products": [{"product_id": catalog["honey"]}]},
            {
                "shelf": 2,
                "capacity_items": 20,
                "products": [{"product_id": catalog["tea"]}, {"product_id": catalog["rice"]}],
            },
        ]
    }

    response = api.put(
        planogram_url(world.a.kiosk_id), json=body, headers=world.headers["operator_a"]
    )

    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "planogram_ambiguous"
    assert error["message"].startswith("商品陈列图无法按重量识别商品：层板 2：")
    assert "cannot be told apart" in error["message_en"]
    details = error["details"]
    assert len(details) >= 2
    assert {detail["field"] for detail in details} == {"body.shelves.1"}
    assert all(detail["type"] == "ambiguous_weights" for detail in details)
    assert all(detail["message"].endswith("重量相近，无法区分") for detail in details)
    messages = [detail["message"] for detail in details]
    assert "层板 2：4 件 岳西翠兰 与 2 件 岳西翠兰 加 1 件 霍邱大米 重量相近，无法区分" in messages
    assert publisher.commands == []
    missing = api.get(planogram_url(world.a.kiosk_id), headers=world.headers["operator_a"])
    assert missing.status_code == 404
    assert missing.json()["code"] == "planogram_not_found"


def test_return_coincidences_are_warnings(
    api: TestClient, world: World, catalog: dict[str, int], key: bytes
) -> None:
    body = {
        "shelves": [
            {"shelf": 0, "capacity_items": 10, "products": [{"product_id": catalog["tea"]}]},
            {"shelf": 1, "capacity_items": 10, "products": [{"product_id": catalog["rice"]}]},
        ]
    }

    response = api.put(
        planogram_url(world.a.kiosk_id), json=body, headers=world.headers["operator_a"]
    )

    assert response.status_code == 200, response.json()
    warnings = response.json()["warnings"]
    returns = [warning for warning in warnings if warning["code"] == "return_coincidence"]
    assert returns, "2 x 100 g taken and a 200 g pack put back weigh nothing"
    first = returns[0]
    assert first["shelf"] == 0
    assert "放回 1 件 霍邱大米" in first["message"]
    assert "不取商品" in first["message"]


def door_body(catalog: dict[str, int], doors: tuple[int, int] | None) -> dict[str, object]:
    """Return a planogram where a misplaced 200 g rice weighs like two 100 g teas."""
    shelves: list[dict[str, object]] = [
        {"shelf": 0, "capacity_items": 10, "products": [{"product_id": catalog["tea"]}]},
        {"shelf": 1, "capacity_items": 10, "products": [{"product_id": catalog["rice"]}]},
    ]
    if doors is not None:
        for shelf, door in zip(shelves, doors, strict=True):
            shelf["door"] = door
    return {"shelves": shelves}


def test_misplaced_pack_behind_same_door_rejected(
    api: TestClient,
    world: World,
    catalog: dict[str, int],
    key: bytes,
    publisher: RecordingPublisher,
) -> None:
    response = api.put(
        planogram_url(world.a.kiosk_id),
        json=door_body(catalog, (0, 0)),
        headers=world.headers["operator_a"],
    )

    assert response.status_code == 422, response.json()
    error = response.json()
    assert error["code"] == "planogram_ambiguous"
    misplaced = [detail for detail in error["details"] if detail["type"] == "misplaced_pack"]
    assert misplaced, error["details"]
    on_tea_shelf = [detail for detail in misplaced if detail["field"] == "body.shelves.0"]
    assert len(on_tea_shelf) == 1
    assert on_tea_shelf[0]["message"] == (
        "层板 0：若有一件 霍邱大米 从层板 1 被放错到这里，1 件 霍邱大米 与 2 件 岳西翠兰 "
        "重量相近，约 100% 的此类购物需人工复核；请把这两种商品放在不同的柜门后"
    )
    assert "put the two products behind different doors" in on_tea_shelf[0]["message_en"]
    assert "accept_misplaced_reviews" in error["message_en"]
    assert publisher.commands == []


def test_doors_on_some_shelves_rejected(
    api: TestClient, world: World, catalog: dict[str, int], key: bytes
) -> None:
    body = door_body(catalog, (0, 0))
    shelves = body["shelves"]
    assert isinstance(shelves, list)
    del shelves[1]["door"]

    response = api.put(
        planogram_url(world.a.kiosk_id), json=body, headers=world.headers["operator_a"]
    )

    assert response.status_code == 422, response.json()
    error = response.json()
    assert error["code"] == "planogram_doors_incomplete"
    assert error["message"] == "层板 1 未填写柜门：请为每个层板填写柜门，或都不填"
    assert error["message_en"] == "Shelf 1 has no door: give the door of every shelf or of none"


@pytest.mark.parametrize("flag", ["true", 1, "yes"])
def test_accept_flag_must_be_boolean(
    api: TestClient, world: World, catalog: dict[str, int], key: bytes, flag: object
) -> None:
    body = door_body(catalog, (0, 0))
    body["accept_misplaced_reviews"] = flag

    response = api.put(
        planogram_url(world.a.kiosk_id), json=body, headers=world.headers["operator_a"]
    )

    assert response.status_code == 422, response.json()
    assert response.json()["code"] == "validation_failed"


def test_misplaced_listing_marks_every_shelf_first() -> None:
    conflicts = [
        MisplacedConflict(shelf, home, "p", (("p", -1),), (("q", -2),), 0.5)
        for shelf, home in [(0, 1), (0, 2), (0, 3), (1, 0), (1, 2), (2, 0)]
    ]

    ordered = _one_per_shelf_first(conflicts)

    assert [(c.shelf, c.home) for c in ordered] == [
        (0, 1),
        (1, 0),
        (2, 0),
        (0, 2),
        (1, 2),
        (0, 3),
    ]


def test_misplaced_pack_behind_other_door_accepted(
    api: TestClient,
    world: World,
    catalog: dict[str, int],
    key: bytes,
    publisher: RecordingPublisher,
) -> None:
    response = api.put(
        planogram_url(world.a.kiosk_id),
        json=door_body(catalog, (0, 254)),
        headers=world.headers["operator_a"],
    )

    assert response.status_code == 200, response.json()
    saved = response.json()
    assert [warning["code"] for warning in saved["warnings"]] == ["return_coincidence"] * len(
        saved["warnings"]
    )
    assert [shelf["door"] for shelf in saved["planogram"]["shelves"]] == [0, 254]
    command = publisher.commands[0]
    assert isinstance(command, PlanogramCommand)
    assert [shelf.door for shelf in command.shelves] == [0, 254]
    again = api.get(planogram_url(world.a.kiosk_id), headers=world.headers["operator_a"])
    assert [shelf["door"] for shelf in again.json()["shelves"]] == [0, 254]


def test_misplaced_pack_without_doors_warned(
    api: TestClient, world: World, catalog: dict[str, int], key: bytes
) -> None:
    response = api.put(
        planogram_url(world.a.kiosk_id),
        json=door_body(catalog, None),
        headers=world.headers["operator_a"],
    )

    assert response.status_code == 200, response.json()
    misplaced = [w for w in response.json()["warnings"] if w["code"] == "misplaced_pack"]
    assert {warning["shelf"] for warning in misplaced} == {0}
    assert "若有一件 霍邱大米 从层板 1 被放错到这里" in misplaced[0]["message"]


def test_misplaced_pack_accepted_on_request(
    api: TestClient,
    world: World,
    catalog: dict[str, int],
    key: bytes,
    seeded: sessionmaker[Session],
) -> None:
    body = door_body(catalog, (0, 0))
    body["accept_misplaced_reviews"] = True

    response = api.put(
        planogram_url(world.a.kiosk_id), json=body, headers=world.headers["operator_a"]
    )

    assert response.status_code == 200, response.json()
    misplaced = [w for w in response.json()["warnings"] if w["code"] == "misplaced_pack"]
    assert {warning["shelf"] for warning in misplaced} == {0}
    with session_scope(seeded) as session:
        entries = list_audit_entries(session, object_type="cabinet", object_id=world.a.kiosk_id)
        entry = entries[-1]
        assert entry.action == "planogram.save"
        assert entry.after is not None
        assert entry.after["accept_misplaced_reviews"] is True
        assert [shelf["door"] for shelf in entry.after["shelves"]] == [0, 0]


def test_get_shows_county_and_sample_flag(
    api: TestClient, world: World, seeded: sessionmaker[Session], key: bytes
) -> None:
    with session_scope(seeded) as session:
        sample = session.scalars(
            sa.select(Product).where(Product.is_sample.is_(True)).order_by(Product.id)
        ).first()
        assert sample is not None
        sample_id, sample_name = sample.id, sample.name
        county_name = sample.source_county.name
        save_layout(session, world.a.kiosk_id, (3, 8, [sample_id]))

    response = api.get(planogram_url(world.a.kiosk_id), headers=world.headers["school_admin_a"])

    assert response.status_code == 200, response.json()
    planogram = response.json()
    assert planogram["version"] == 1
    assert planogram["created_by"] == "system:test"
    product = planogram["shelves"][0]["products"][0]
    assert product["product_id"] == sample_id
    assert product["name"] == sample_name
    assert product["source_county"]["name"] == county_name
    assert product["is_sample"] is True
    assert product["sample_notice"].startswith("示例数据")
    assert product["price_overridden"] is False
    assert product["price_fen"] == product["catalog_price_fen"]


def test_versions_increase_and_base_version_checked(
    api: TestClient, world: World, catalog: dict[str, int], key: bytes
) -> None:
    url = planogram_url(world.a.kiosk_id)
    headers = world.headers["province_admin"]
    body = {
        "shelves": [{"shelf": 0, "capacity_items": 5, "products": [{"product_id": catalog["tea"]}]}]
    }

    first = api.put(url, json=body, headers=headers)
    second = api.put(url, json={**body, "base_version": 1}, headers=headers)
    stale = api.put(url, json={**body, "base_version": 1}, headers=headers)

    assert first.json()["planogram"]["version"] == 1
    assert second.json()["planogram"]["version"] == 2
    assert stale.status_code == 409
    assert stale.json()["code"] == "planogram_version_conflict"
    assert api.get(url, headers=headers).json()["version"] == 2


def test_unprovisioned_cabinet_saved_not_published(
    api: TestClient, world: World, catalog: dict[str, int], publisher: RecordingPublisher
) -> None:
    body = {
        "shelves": [{"shelf": 0, "capacity_items": 5, "products": [{"product_id": catalog["tea"]}]}]
    }

    response = api.put(
        planogram_url(world.a.kiosk_id), json=body, headers=world.headers["operator_a"]
    )

    assert response.status_code == 200
    assert response.json()["published"] is False
    assert "尚未签发凭证" in response.json()["publish_error"]
    assert publisher.commands == []


def test_broker_failure_keeps_saved_version(
    api: TestClient,
    world: World,
    catalog: dict[str, int],
    key: bytes,
    publisher: RecordingPublisher,
    seeded: sessionmaker[Session],
) -> None:
    publisher.fail_next = True
    body = {
        "shelves": [{"shelf": 0, "capacity_items": 5, "products": [{"product_id": catalog["tea"]}]}]
    }

    response = api.put(
        planogram_url(world.a.kiosk_id), json=body, headers=world.headers["operator_a"]
    )

    assert response.status_code == 200
    assert response.json()["published"] is False
    assert response.json()["planogram"]["published_at"] is None
    with session_scope(seeded) as session:
        saved = session.scalar(sa.select(Planogram))
        assert saved is not None
        assert saved.version == 1
        assert saved.publish_count == 0
        entries = list_audit_entries(session, object_type="cabinet", object_id=world.a.kiosk_id)
        assert [entry.action for entry in entries] == ["planogram.save"]


def test_resend_sends_latest_as_new_command(
    world: World, catalog: dict[str, int], key: bytes, seeded: sessionmaker[Session]
) -> None:
    publisher = RecordingPublisher()
    with session_scope(seeded) as session:
        save_layout(session, world.a.kiosk_id, (0, 5, [catalog["tea"]]))
        save_layout(session, world.a.kiosk_id, (0, 5, [catalog["honey"]]))
        target = cabinet(session, world.a.kiosk_id)

        first = resend_planogram(session, publisher, target)
        second = resend_planogram(session, publisher, target)

        assert first is not None
        assert first.version == 2
        assert first.publish_count == 2
    sent = [command for command in publisher.commands if isinstance(command, PlanogramCommand)]
    assert [command.version for command in sent] == [2, 2]
    assert sent[0].nonce != sent[1].nonce
    assert sent[0].command_id != sent[1].command_id
    assert sent[0].shelves[0].products[0].product_id == str(catalog["honey"])
    assert all(command.signature == compute_signature(command, key) for command in sent)
    assert second is not None


def test_resend_without_planogram_sends_nothing(
    world: World, key: bytes, seeded: sessionmaker[Session]
) -> None:
    publisher = RecordingPublisher()
    with session_scope(seeded) as session:
        assert resend_planogram(session, publisher, cabinet(session, world.a.kiosk_id)) is None
    assert publisher.commands == []


def test_scope_of_planogram_routes(
    api: TestClient, world: World, catalog: dict[str, int], key: bytes
) -> None:
    url = planogram_url(world.a.kiosk_id)
    body = {
        "shelves": [{"shelf": 0, "capacity_items": 5, "products": [{"product_id": catalog["tea"]}]}]
    }

    other_operator = api.put(url, json=body, headers=world.headers["operator_b"])
    school_admin = api.put(url, json=body, headers=world.headers["school_admin_a"])
    other_school = api.get(url, headers=world.headers["school_admin_b"])

    assert other_operator.status_code == 404
    assert other_operator.json()["code"] == "cabinet_not_found"
    assert school_admin.status_code == 403
    assert other_school.status_code == 404


@pytest.mark.parametrize(
    ("shelves", "status", "code"),
    [
        pytest.param(
            [
                {"shelf": 0, "capacity_items": 5, "products": [{"product_id": "tea"}]},
                {"shelf": 0, "capacity_items": 5, "products": [{"product_id": "rice"}]},
            ],
            422,
            "validation_failed",
            id="duplicate-shelf",
        ),
        pytest.param(
            [{"shelf": 0, "capacity_items": 5, "products": [{"product_id": "expired"}]}],
            422,
            "product_not_certified",
            id="expired-certificate",
        ),
        pytest.param(
            [{"shelf": 0, "capacity_items": 5, "products": [{"product_id": 999_999}]}],
            404,
            "product_not_found",
            id="unknown-product",
        ),
        pytest.param(
            [{"shelf": 0, "capacity_items": 0, "products": [{"product_id": "tea"}]}],
            422,
            "validation_failed",
            id="zero-capacity",
        ),
        pytest.param(
            [{"shelf": 256, "capacity_items": 5, "products": [{"product_id": "tea"}]}],
            422,
            "validation_failed",
            id="shelf-out-of-range",
        ),
        pytest.param(
            [{"shelf": 0, "door": 255, "capacity_items": 5, "products": [{"product_id": "tea"}]}],
            422,
            "validation_failed",
            id="door-out-of-range",
        ),
        pytest.param(
            [
                {"shelf": 0, "door": 0, "capacity_items": 5, "products": [{"product_id": "tea"}]},
                {"shelf": 1, "capacity_items": 5, "products": [{"product_id": "rice"}]},
            ],
            422,
            "planogram_doors_incomplete",
            id="door-missing-on-one-shelf",
        ),
    ],
)
def test_invalid_planogram_rejected(
    api: TestClient,
    world: World,
    catalog: dict[str, int],
    key: bytes,
    shelves: list[dict[str, object]],
    status: int,
    code: str,
) -> None:
    for shelf in shelves:
        products = shelf["products"]
        assert isinstance(products, list)
        for line in products:
            if isinstance(line["product_id"], str):
                line["product_id"] = catalog[line["product_id"]]

    response = api.put(
        planogram_url(world.a.kiosk_id),
        json={"shelves": shelves},
        headers=world.headers["operator_a"],
    )

    assert response.status_code == status, response.json()
    assert response.json()["code"] == code
