"""The operator's pages: fleet board, map, stock, planogram editor, sales, provisioning.

Browser tests drive headless Chromium against the app served by uvicorn. The acceptance
test runs the whole stack (tests/operator_stack.py): Mosquitto, ``fleet-server serve``,
a virtual board and a kiosk agent, and injects a fault at the board.
"""

import math
import os
import re
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page
from sqlalchemy.orm import Session, sessionmaker

from browser_fixtures import live_server, sign_in, untranslated_texts
from fleet_server.app import create_app
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import session_scope
from fleet_server.ingest.store import BatchStore
from fleet_server.messaging.publisher import RecordingPublisher
from fleet_server.models import (
    Alert,
    AlertState,
    Building,
    Cabinet,
    LocationType,
    Placement,
    Planogram,
    Sale,
)
from fleet_server.models.base import utc_now
from fleet_server.reporting.periods import SHANGHAI
from fleet_server.schemas.monitoring import FleetCabinetPublic
from fleet_server.services.access import Actor
from fleet_server.services.broker_auth import verify_mosquitto_password
from fleet_server.services.monitoring import handle_event, handle_status, handle_telemetry
from fleet_server.web.operator.campus_map import project_school
from fleet_server.web.operator.common import parse_yuan
from fleet_server.web.operator.sales import daily_sales, nice_step, sales_chart
from kiosk_agent.contract import (
    DoorPosition,
    DoorTelemetry,
    EventType,
    KioskState,
    LockState,
    SaleRecord,
    StockLine,
)
from operations_helpers import add_product, event, save_layout, status, telemetry
from operator_stack import campus_stack
from purchase_helpers import Shop, current_code, received, sale_record
from server_helpers import TEST_PASSWORD, World
from simulator.control import ControlClient

pytest_plugins = ["server_fixtures", "purchase_fixtures", "browser_fixtures"]

# How long a test waits for the page's next poll (every 2 s) to show a change.
LIVE_UPDATE_TIMEOUT_MS = 8_000
# The acceptance bound: a fault injected at the board shows on the board within this.
FAULT_SHOWN_WITHIN_S = 5.0
SCREENSHOTS_ENV = "ZHIGUI_OPERATOR_SCREENSHOTS"


# --- Helpers --------------------------------------------------------------------------------


@dataclass
class Campus:
    """The World of server_fixtures plus more cabinets of operator A, in named states."""

    world: World
    ok: str
    door_open: str
    offline: str
    unknown: str
    other_operator: str


def add_cabinet(
    session: Session,
    *,
    school_id: int,
    operator_id: int,
    kiosk_id: str,
    building: str,
    location: LocationType = LocationType.DORMITORY,
    latitude: float | None = None,
    longitude: float | None = None,
) -> None:
    found = session.scalar(
        sa.select(Building).where(Building.school_id == school_id, Building.name == building)
    )
    if found is None:
        found = Building(
            school_id=school_id,
            name=building,
            location_type=location,
            capacity=800,
            latitude_microdeg=round(latitude * 1_000_000) if latitude is not None else None,
            longitude_microdeg=round(longitude * 1_000_000) if longitude is not None else None,
        )
    placement = Placement(building=found, floor=1, description="一楼大厅")
    session.add_all(
        [found, placement, Cabinet(kiosk_id=kiosk_id, placement=placement, operator_id=operator_id)]
    )
    session.flush()


def report_online(factory: sessionmaker[Session], kiosk_id: str, **changes: Any) -> None:
    """Apply an online status and a heartbeat, as the monitoring subscriber would."""
    now = utc_now()
    with session_scope(factory) as session:
        handle_status(session, status(kiosk_id, KioskState.ONLINE, now - timedelta(seconds=1)))
        handle_telemetry(session, telemetry(kiosk_id, now, **changes))


def report_offline(factory: sessionmaker[Session], kiosk_id: str) -> None:
    now = utc_now()
    with session_scope(factory) as session:
        handle_status(session, status(kiosk_id, KioskState.ONLINE, now - timedelta(minutes=5)))
        handle_status(session, status(kiosk_id, KioskState.OFFLINE, now))


def report_event(
    factory: sessionmaker[Session], kiosk_id: str, kind: EventType, **detail: Any
) -> None:
    with session_scope(factory) as session:
        handle_event(session, event(kiosk_id, kind, utc_now(), detail))


OPEN_DOOR = [DoorTelemetry(door=0, lock=LockState.LOCKED, position=DoorPosition.OPEN)]


def build_campus(world: World, seeded: sessionmaker[Session]) -> Campus:
    """Give operator A cabinets at 安徽大学 that are ok, door open, offline and never seen.

    The one never seen shares the building of the one that is ok.
    """
    latitude, longitude = 31.842136, 117.289467  # the World's dormitory
    with session_scope(seeded) as session:
        school = world.a.school_id
        operator = world.operator_a_id
        add_cabinet(
            session,
            school_id=school,
            operator_id=operator,
            kiosk_id="AH-10357-0002",
            building="学生公寓 5 号楼",
            latitude=latitude + 0.003,
            longitude=longitude,
        )
        add_cabinet(
            session,
            school_id=school,
            operator_id=operator,
            kiosk_id="AH-10357-0003",
            building="第一学生食堂",
            location=LocationType.CANTEEN,
            latitude=latitude,
            longitude=longitude + 0.004,
        )
        add_cabinet(
            session,
            school_id=school,
            operator_id=operator,
            kiosk_id="AH-10357-0004",
            building="学生公寓 1 号楼",
        )
    report_online(seeded, world.a.kiosk_id)
    report_online(seeded, "AH-10357-0002", doors=OPEN_DOOR)
    report_offline(seeded, "AH-10357-0003")
    report_online(seeded, world.b.kiosk_id)
    return Campus(
        world=world,
        ok=world.a.kiosk_id,
        door_open="AH-10357-0002",
        offline="AH-10357-0003",
        unknown="AH-10357-0004",
        other_operator=world.b.kiosk_id,
    )


@pytest.fixture
def campus(world: World, seeded: sessionmaker[Session]) -> Campus:
    return build_campus(world, seeded)


@pytest.fixture
def base_url(settings: ServerSettings, engine: sa.Engine) -> Iterator[str]:
    with live_server(create_app(settings, engine=engine)) as url:
        yield url


def card_text(page: Page, kiosk_id: str, field: str) -> str:
    return page.inner_text(f'[data-kiosk="{kiosk_id}"] [data-field="{field}"]')


def wait_for_poll(page: Page) -> None:
    """Wait until operator.js has refreshed the page from the API at least once."""
    page.wait_for_function(
        "() => document.querySelector('[data-updated]')?.textContent.trim().length > 0",
        timeout=LIVE_UPDATE_TIMEOUT_MS,
    )


def signed_in_client(client: TestClient, username: str) -> str:
    """Sign ``client`` in through the page; return its CSRF token, empty for other roles."""
    client.post("/login", data={"username": username, "password": TEST_PASSWORD})
    page = client.get("/operator/provision")
    match = re.search(r'name="csrf-token" content="([0-9a-f]*)"', page.text)
    assert match is not None, page.text[:500]
    return match.group(1)


def settle_sale(
    shop_client: TestClient,
    shop: Shop,
    seeded: sessionmaker[Session],
    *,
    packs: tuple[int, int] = (2, 1),
    recorded_at: datetime | None = None,
    review_reasons: tuple[str, ...] = (),
) -> SaleRecord:
    """Start a purchase as the student and store the cabinet's sale of tea and crisps.

    The default sale is 2 x tea at 3.50 and 1 x crisps at 5.90: 12.90 yuan.
    """
    response = shop_client.post(
        "/api/v1/purchases",
        json={"kiosk_id": shop.kiosk_id, "code": current_code(shop)},
        headers=shop.headers["student"],
    )
    assert response.status_code == 201, response.json()
    tea, crisps = shop.products
    lines = [(tea, packs[0], 350, 0), (crisps, packs[1], 590, 1)]
    record = sale_record(
        shop.kiosk_id,
        uuid.UUID(response.json()["id"]),
        [line for line in lines if line[1] > 0],
        review_reasons=review_reasons,
    )
    if recorded_at is not None:
        shift = recorded_at - record.recorded_at
        assert record.opened_at is not None
        assert record.closed_at is not None
        record = record.model_copy(
            update={
                "recorded_at": recorded_at,
                "opened_at": record.opened_at + shift,
                "closed_at": record.closed_at + shift,
            }
        )
    BatchStore(seeded).commit([received(record)])
    return record


# --- Fleet board ----------------------------------------------------------------------------


def test_board_groups_and_refreshes_live(
    page: Page, base_url: str, campus: Campus, seeded: sessionmaker[Session]
) -> None:
    sign_in(page, base_url, "operator-a")
    page.goto(f"{base_url}/operator")
    school_headings = page.locator(".school-group h2 span").all_inner_texts()
    locations = page.locator(".school-group h3").all_inner_texts()
    kiosks = page.locator("[data-testid=cabinet-card]").evaluate_all(
        "cards => cards.map(card => card.dataset.kiosk)"
    )
    before = {
        "connection": card_text(page, campus.ok, "connection"),
        "doors": card_text(page, campus.ok, "doors"),
        "offline": card_text(page, campus.offline, "connection"),
        "never": card_text(page, campus.unknown, "last-seen"),
        "open": card_text(page, campus.door_open, "doors"),
        "online": page.inner_text("[data-summary=online]"),
    }
    page.evaluate("() => { window.notReloaded = true; }")

    report_online(seeded, campus.ok, doors=OPEN_DOOR)
    report_event(seeded, campus.ok, EventType.DOOR_FORCED, door=0)
    page.wait_for_function(
        """kiosk => document.querySelector(`[data-kiosk="${kiosk}"] [data-field="alerts"]`)
            .textContent.includes('柜门 0 被强行打开')""",
        arg=campus.ok,
        timeout=LIVE_UPDATE_TIMEOUT_MS,
    )
    after_doors = card_text(page, campus.ok, "doors")
    after_condition = page.get_attribute(f'[data-kiosk="{campus.ok}"]', "data-condition")
    alert_list = page.inner_text("[data-testid=alert-list]")
    not_reloaded = page.evaluate("() => window.notReloaded === true")

    assert school_headings == ["安徽大学"]
    assert locations == ["学生公寓", "学生食堂"]
    assert sorted(kiosks) == [campus.ok, campus.door_open, campus.offline, campus.unknown]
    assert before == {
        "connection": "在线",
        "doors": "关闭",
        "offline": "离线",
        "never": "从未联系",
        "open": "打开",
        "online": "2",
    }
    assert after_doors == "打开"
    assert after_condition == "attention"
    assert "柜门 0 被强行打开" in alert_list
    assert campus.ok in alert_list
    assert not_reloaded


def test_acknowledge_then_resolve_alert(
    page: Page, base_url: str, campus: Campus, seeded: sessionmaker[Session]
) -> None:
    report_event(seeded, campus.ok, EventType.DOOR_FORCED, door=1)
    report_event(seeded, campus.other_operator, EventType.DOOR_FORCED, door=0)
    sign_in(page, base_url, "operator-a")
    page.goto(f"{base_url}/operator")
    items = page.locator("#alert-list .alert-item")
    listed = items.count()

    items.first.locator("[data-testid=acknowledge]").click()
    page.wait_for_function(
        "() => document.querySelector('#alert-list [data-slot=state]').textContent === '已确认'",
        timeout=LIVE_UPDATE_TIMEOUT_MS,
    )
    acknowledged_text = items.first.inner_text()
    acknowledge_hidden = items.first.locator("form[data-alert-action=acknowledge]").is_hidden()
    with seeded() as session:
        acknowledged = session.scalars(
            sa.select(Alert).join(Cabinet).where(Cabinet.kiosk_id == campus.ok)
        ).one()
        acknowledged_state, acknowledged_by = acknowledged.state, acknowledged.acknowledged_by

    items.first.locator("[data-testid=resolve]").click()
    page.wait_for_selector("[data-alerts-empty]", state="visible", timeout=LIVE_UPDATE_TIMEOUT_MS)
    with seeded() as session:
        # .all(): dict() would take the Result's keys() for a mapping's.
        states = dict(
            session.execute(
                sa.select(Cabinet.kiosk_id, Alert.state).join(
                    Cabinet, Alert.cabinet_id == Cabinet.id
                )
            ).all()
        )

    assert listed == 1
    assert "柜门 1 被强行打开" in acknowledged_text
    assert "operator-a 已确认" in acknowledged_text
    assert acknowledge_hidden
    assert acknowledged_state is AlertState.ACKNOWLEDGED
    assert acknowledged_by == "operator-a"
    assert states == {campus.ok: AlertState.RESOLVED, campus.other_operator: AlertState.OPEN}


def test_alert_form_works_without_javascript(
    client: TestClient, campus: Campus, seeded: sessionmaker[Session]
) -> None:
    report_event(seeded, campus.ok, EventType.DOOR_FORCED, door=0)
    with seeded() as session:
        alert_id = session.scalars(sa.select(Alert.id)).one()
    csrf = signed_in_client(client, "operator-a")

    forged = client.post(
        f"/operator/alerts/{alert_id}/acknowledge", data={}, follow_redirects=False
    )
    done = client.post(
        f"/operator/alerts/{alert_id}/acknowledge",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    again = client.post(
        f"/operator/alerts/{alert_id}/acknowledge",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    with seeded() as session:
        state = session.get(Alert, alert_id).state  # type: ignore[union-attr]

    assert forged.status_code == 403
    assert done.status_code == 303
    assert done.headers["location"] == "/operator?notice=alert_acknowledged"
    assert again.headers["location"] == "/operator?notice=alert_failed"
    assert state is AlertState.ACKNOWLEDGED


def test_pages_scoped_to_own_cabinets(client: TestClient, campus: Campus) -> None:
    anonymous = client.get("/operator/map", follow_redirects=False)
    signed_in_client(client, "admin-ahu")
    school_admin = client.get("/operator")
    signed_in_client(client, "operator-b")
    foreign_cabinet = client.get(f"/operator/cabinets/{campus.ok}")
    foreign_planogram = client.get(f"/operator/cabinets/{campus.ok}/planogram")
    own_board = client.get("/operator")

    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=%2Foperator%2Fmap"
    assert school_admin.status_code == 403
    assert foreign_cabinet.status_code == 404
    assert foreign_planogram.status_code == 404
    assert campus.other_operator in own_board.text
    assert campus.ok not in own_board.text


# --- Placement map --------------------------------------------------------------------------


def test_map_colours_dots_by_status(
    page: Page, base_url: str, campus: Campus, seeded: sessionmaker[Session]
) -> None:
    with session_scope(seeded) as session:
        add_cabinet(
            session,
            school_id=campus.world.a.school_id,
            operator_id=campus.world.operator_a_id,
            kiosk_id="AH-10357-0005",
            building="教工宿舍",
            location=LocationType.STAFF_LIVING,
        )
    sign_in(page, base_url, "operator-a")
    page.goto(f"{base_url}/operator/map")
    dots = page.locator("[data-testid=map-dot]").evaluate_all(
        """dots => dots.map(dot => ({
            kiosk: dot.dataset.kiosk, condition: dot.dataset.condition,
            fill: getComputedStyle(dot).fill,
            x: Number(dot.getAttribute('cx')), y: Number(dot.getAttribute('cy'))}))"""
    )
    legend = page.locator("[data-testid=legend] li").evaluate_all(
        """items => items.map(item => ({
            condition: item.dataset.condition,
            fill: getComputedStyle(item.querySelector('circle')).fill,
            text: item.textContent.trim()}))"""
    )
    unplaced = page.inner_text(".unplaced")
    report_offline(seeded, campus.ok)
    page.wait_for_function(
        """kiosk => document.querySelector(`circle[data-kiosk="${kiosk}"]`)
            .classList.contains('dot-offline')""",
        arg=campus.ok,
        timeout=LIVE_UPDATE_TIMEOUT_MS,
    )
    listed_condition = page.inner_text(f'li[data-kiosk="{campus.ok}"] [data-field="condition"]')
    by_kiosk = {dot["kiosk"]: dot for dot in dots}
    legend_fill = {item["condition"]: item["fill"] for item in legend}

    assert {kiosk: dot["condition"] for kiosk, dot in by_kiosk.items()} == {
        campus.ok: "ok",
        campus.door_open: "attention",
        campus.offline: "offline",
        campus.unknown: "unknown",
    }
    for dot in dots:
        assert dot["fill"] == legend_fill[dot["condition"]], dot
    assert len(set(legend_fill.values())) == 4
    assert [item["text"] for item in legend] == [
        "在线，正常",
        "在线，有故障或告警",
        "离线",
        "尚未联系",
    ]
    # North up, east right: 0002 lies 0.003° north, 0003 0.004° east of 0001.
    assert by_kiosk[campus.door_open]["y"] < by_kiosk[campus.ok]["y"]
    assert by_kiosk[campus.offline]["x"] > by_kiosk[campus.ok]["x"]
    # 0004 shares the building of 0001, so both sit on a ring around it.
    assert by_kiosk[campus.unknown]["x"] == by_kiosk[campus.ok]["x"]
    assert by_kiosk[campus.unknown]["y"] - by_kiosk[campus.ok]["y"] == pytest.approx(28.0, abs=0.2)
    assert "AH-10357-0005" in unplaced
    assert listed_condition == "离线"


def test_projection_keeps_distances_to_scale() -> None:
    building_a = Building(name="A", latitude_microdeg=31_842_136, longitude_microdeg=117_289_467)
    building_b = Building(name="B", latitude_microdeg=31_842_136, longitude_microdeg=117_299_467)
    placements = {
        1: Placement(id=1, building=building_a, description="a"),
        2: Placement(id=2, building=building_b, description="b"),
        3: Placement(id=3, building=building_a, description="a2"),
    }
    rows = [
        fleet_row("AH-10357-0001", 1),
        fleet_row("AH-10357-0002", 2),
        fleet_row("AH-10357-0003", 3),
    ]

    projected = project_school(1, "安徽大学", rows, placements)
    dots = {dot.row.kiosk_id: dot for dot in projected.dots}
    hub_distance = dots["AH-10357-0002"].hub_x - dots["AH-10357-0001"].hub_x
    metres = 0.01 * 111_320 * math.cos(math.radians(31.842136))
    fanned = math.dist(
        (dots["AH-10357-0001"].x, dots["AH-10357-0001"].y),
        (dots["AH-10357-0003"].x, dots["AH-10357-0003"].y),
    )

    assert projected.scale_length / projected.scale_m == pytest.approx(
        hub_distance / metres, rel=1e-3
    )
    assert dots["AH-10357-0001"].hub_y == dots["AH-10357-0002"].hub_y
    assert fanned == pytest.approx(28.0, abs=0.2)
    assert [label.text for label in projected.labels] == ["A", "B"]


def fleet_row(kiosk_id: str, placement_id: int) -> FleetCabinetPublic:
    return FleetCabinetPublic.model_validate(
        {
            "kiosk_id": kiosk_id,
            "school_id": 1,
            "school_name": "安徽大学",
            "placement_id": placement_id,
            "placement_name": "x",
            "location_type": "dormitory",
            "operator_id": 1,
            "operator_name": "x",
            "service_status": "in_service",
            "connection": "online",
            "connection_since": None,
            "offline_reason": None,
            "last_seen_at": None,
            "doors_closed": True,
            "lock_faults": 0,
            "scale_faults": 0,
            "serial_link_up": True,
            "backlog_messages": 0,
            "backlog_oldest_at": None,
            "firmware_version": None,
            "agent_version": None,
            "planogram_version": 1,
            "planogram_latest_version": 1,
            "disk_free_bytes": None,
            "open_alerts": 0,
        }
    )


# --- Stock and restock ----------------------------------------------------------------------


def test_stock_and_restock_list(
    client: TestClient, campus: Campus, seeded: sessionmaker[Session]
) -> None:
    with session_scope(seeded) as session:
        rice = add_product(session, "霍邱大米", weight_g=500, tolerance_g=10)
        tea = add_product(session, "岳西翠兰", weight_g=100, tolerance_g=5, is_sample=True)
        rice_id, tea_id = rice.id, tea.id
        save_layout(session, campus.ok, (0, 20, [rice_id]), (1, 10, [tea_id]))
    with session_scope(seeded) as session:
        handle_event(
            session,
            event(
                campus.ok,
                EventType.RESTOCK,
                utc_now(),
                {},
                stock=[
                    StockLine(shelf=0, product_id=str(rice_id), quantity=3),
                    StockLine(shelf=1, product_id=str(tea_id), quantity=9),
                ],
            ),
        )
    signed_in_client(client, "operator-a")

    stock = client.get("/operator/stock")
    restock = client.get("/operator/restock")
    to_bring = re.findall(
        r'data-product="(\d+)">.*?data-field="to-bring">(\d+)<', restock.text, re.S
    )
    totals = re.findall(
        r'data-product="(\d+)"><td lang="zh-CN">[^<]*</td>'
        r'<td class="num strong" data-field="total">(\d+)<',
        restock.text,
    )

    assert stock.status_code == 200
    assert "霍邱大米" in stock.text
    assert "库存不足" in stock.text
    assert "示例数据" in stock.text
    assert restock.status_code == 200
    assert to_bring == [(str(rice_id), "17")]
    assert totals == [(str(rice_id), "17")]


# --- Planogram editor -----------------------------------------------------------------------


@pytest.fixture
def products(seeded: sessionmaker[Session]) -> dict[str, int]:
    """Packs of 100 g and 200 g cannot share a shelf (2 x 100 g weighs 200 g); 1 kg can."""
    with session_scope(seeded) as session:
        created = {
            "rice": add_product(session, "测试大米", weight_g=100, tolerance_g=5),
            "tea": add_product(session, "测试茶叶", weight_g=200, tolerance_g=5),
            "oil": add_product(session, "测试山茶油", weight_g=1000, tolerance_g=10),
        }
        return {name: product.id for name, product in created.items()}


def test_planogram_verdict_next_to_shelf(
    page: Page,
    base_url: str,
    campus: Campus,
    products: dict[str, int],
    seeded: sessionmaker[Session],
) -> None:
    sign_in(page, base_url, "operator-a")
    page.goto(f"{base_url}/operator/cabinets/{campus.ok}/planogram")
    page.select_option("#shelves-0-product-0", str(products["rice"]))
    page.click("button[value='add_product:0']")
    page.select_option("#shelves-0-product-1", str(products["tea"]))
    page.fill("#shelves-0-capacity", "30")
    page.click("[data-testid=save-planogram]")

    form_error = page.inner_text("[data-testid=form-error]")
    verdict = page.inner_text("[data-shelf-index='0'] [data-testid=shelf-conflicts]")
    kept = {
        "capacity": page.input_value("#shelves-0-capacity"),
        "first": page.input_value("#shelves-0-product-0"),
        "second": page.input_value("#shelves-0-product-1"),
    }
    with seeded() as session:
        versions_after_rejection = session.scalar(sa.select(sa.func.count()).select_from(Planogram))

    page.select_option("#shelves-0-product-1", str(products["oil"]))
    page.click("[data-testid=save-planogram]")
    saved = page.inner_text("[data-testid=planogram-saved]")
    with seeded() as session:
        planogram = session.scalars(sa.select(Planogram)).one()
        layout = [
            (shelf.shelf, shelf.capacity_items, [line.product_id for line in shelf.lines])
            for shelf in planogram.shelves
        ]

    assert "陈列图未保存" in form_error
    assert "测试大米" in verdict
    assert "测试茶叶" in verdict
    assert "无法区分" in verdict
    assert kept == {
        "capacity": "30",
        "first": str(products["rice"]),
        "second": str(products["tea"]),
    }
    assert versions_after_rejection == 0
    assert "已保存为版本 1" in saved
    assert layout == [(0, 30, [products["rice"], products["oil"]])]


def test_planogram_misplaced_pack_needs_consent(
    page: Page,
    base_url: str,
    campus: Campus,
    products: dict[str, int],
    seeded: sessionmaker[Session],
) -> None:
    sign_in(page, base_url, "operator-a")
    page.goto(f"{base_url}/operator/cabinets/{campus.ok}/planogram")
    page.select_option("#shelves-0-product-0", str(products["rice"]))
    page.fill("#shelves-0-door", "0")
    page.click("button[value='add_shelf']")
    page.select_option("#shelves-1-product-0", str(products["tea"]))
    door_of_new_shelf = page.input_value("#shelves-1-door")
    consent_before = page.locator("[data-testid=accept-misplaced]").count()
    page.click("[data-testid=save-planogram]")

    verdict = page.inner_text("[data-shelf-index='0'] [data-testid=shelf-conflicts]")
    # Consent covers only the layout shown with its conflicts: after an edit it is void.
    page.check("[data-testid=accept-misplaced]")
    page.fill("#shelves-0-capacity", "30")
    page.click("[data-testid=save-planogram]")
    rejected_again = page.locator("[data-testid=form-error]").count()
    ticked_after_edit = page.is_checked("[data-testid=accept-misplaced]")
    page.check("[data-testid=accept-misplaced]")
    page.click("[data-testid=save-planogram]")
    saved = page.inner_text("[data-testid=planogram-saved]")
    warning = page.inner_text("[data-shelf-index='0'] [data-testid=shelf-warnings]")
    consent_after = page.locator("[data-testid=accept-misplaced]").count()
    with seeded() as session:
        planogram = session.scalars(sa.select(Planogram)).one()
        doors = [shelf.door for shelf in planogram.shelves]

    assert door_of_new_shelf == "0"
    assert consent_before == 0
    assert rejected_again == 1
    assert ticked_after_edit is False
    assert "若有一件 测试茶叶 从层板 1 被放错到这里" in verdict
    assert "请把这两种商品放在不同的柜门后" in verdict
    assert "已保存为版本 1" in saved
    assert "若有一件 测试茶叶 从层板 1 被放错到这里" in warning
    assert consent_after == 0
    assert doors == [0, 0]


def test_planogram_door_errors(
    client: TestClient, campus: Campus, products: dict[str, int]
) -> None:
    csrf = signed_in_client(client, "operator-a")
    form = {
        "csrf_token": csrf,
        "shelf_count": "3",
        "shelves-0-shelf": "0",
        "shelves-0-door": "0",
        "shelves-0-capacity": "10",
        "shelves-0-line_count": "1",
        "shelves-0-product-0": str(products["rice"]),
        "shelves-1-shelf": "1",
        "shelves-1-door": "",
        "shelves-1-capacity": "10",
        "shelves-1-line_count": "1",
        "shelves-1-product-0": str(products["oil"]),
        "shelves-2-shelf": "2",
        "shelves-2-door": "门二",
        "shelves-2-capacity": "10",
        "shelves-2-line_count": "1",
        "shelves-2-product-0": str(products["tea"]),
        "action": "save",
    }

    response = client.post(f"/operator/cabinets/{campus.ok}/planogram", data=form)

    assert response.status_code == 422
    assert "其他层板已填写柜门，请也填写此层板的柜门" in response.text
    assert "应在 0 到 254 之间" in response.text
    assert 'value="门二"' in response.text


def test_planogram_field_errors_keep_input(
    client: TestClient, campus: Campus, products: dict[str, int]
) -> None:
    csrf = signed_in_client(client, "operator-a")
    form = {
        "csrf_token": csrf,
        "shelf_count": "2",
        "shelves-0-shelf": "0",
        "shelves-0-capacity": "zwanzig",
        "shelves-0-line_count": "1",
        "shelves-0-product-0": str(products["rice"]),
        "shelves-0-price-0": "3.999",
        "shelves-1-shelf": "0",
        "shelves-1-capacity": "10",
        "shelves-1-line_count": "1",
        "shelves-1-product-0": "",
        "action": "save",
    }

    response = client.post(f"/operator/cabinets/{campus.ok}/planogram", data=form)

    assert response.status_code == 422
    assert "应在 1 到 10000 之间" in response.text
    assert "请输入金额，如 12.50" in response.text
    assert "层板编号 0 重复" in response.text
    assert "每个层板至少放一种商品" in response.text
    assert 'value="zwanzig"' in response.text
    assert 'value="3.999"' in response.text


# --- Sales and refunds ----------------------------------------------------------------------


@pytest.fixture
def shop_url(
    purchase_settings: ServerSettings, engine: sa.Engine, publisher: RecordingPublisher
) -> Iterator[str]:
    app = create_app(purchase_settings, engine=engine, command_publisher=publisher)
    with live_server(app) as url:
        yield url


def test_refund_form_errors_keep_input(
    page: Page,
    shop_url: str,
    shop: Shop,
    shop_client: TestClient,
    seeded: sessionmaker[Session],
) -> None:
    record = settle_sale(shop_client, shop, seeded)
    with seeded() as session:
        tea_line = (
            session.scalars(sa.select(Sale).where(Sale.sale_id == record.sale_id)).one().lines[0]
        )
        tea_line_id = tea_line.id
    sign_in(page, shop_url, "operator-a")
    page.goto(f"{shop_url}/operator/sales/{record.sale_id}")

    page.fill("#amount", "abc")
    page.click("[data-testid=refund-submit]")
    first = {
        "amount": page.inner_text("#amount-error"),
        "reason": page.inner_text("#reason-error"),
        "kept": page.input_value("#amount"),
    }
    page.fill("#amount", "99.99")
    page.fill("#reason", "包装破损")
    page.click("[data-testid=refund-submit]")
    second = {
        "amount": page.inner_text("#amount-error"),
        "kept": page.input_value("#amount"),
        "reason": page.input_value("#reason"),
        "reason_error": page.locator("#reason-error").count(),
    }
    page.check("input[name=mode][value=lines]")
    amount_hidden = page.locator("[data-refund-mode=amount]").is_hidden()
    page.fill(f"#quantity-{tea_line_id}", "5")
    page.click("[data-testid=refund-submit]")
    third = {
        "line": page.inner_text(f"#quantity-{tea_line_id}-error"),
        "kept": page.input_value(f"#quantity-{tea_line_id}"),
        "mode": page.locator("input[name=mode][value=lines]").is_checked(),
    }
    page.fill(f"#quantity-{tea_line_id}", "1")
    page.click("[data-testid=refund-submit]")
    done = page.inner_text("[data-testid=refund-done]")
    with seeded() as session:
        sale = session.scalars(sa.select(Sale).where(Sale.sale_id == record.sale_id)).one()
        refunded = (sale.refunded_fen, [line.refunded_quantity for line in sale.lines])
        reasons = [refund.reason for refund in sale.refunds]

    assert first == {
        "amount": "请输入金额，如 12.50（最多两位小数）",
        "reason": "必填",
        "kept": "abc",
    }
    assert second == {
        "amount": "超过可退金额 ¥12.90",
        "kept": "99.99",
        "reason": "包装破损",
        "reason_error": 0,
    }
    assert amount_hidden
    assert third == {"line": "最多还可退 2 件", "kept": "5", "mode": True}
    assert done == "已退款 ¥3.50。"
    assert refunded == (350, [1, 0])
    assert reasons == ["包装破损"]


def test_sales_chart_and_review_list(
    client: TestClient, shop: Shop, shop_client: TestClient, seeded: sessionmaker[Session]
) -> None:
    settle_sale(shop_client, shop, seeded)
    flagged = settle_sale(shop_client, shop, seeded, review_reasons=("ambiguous_weight",))
    signed_in_client(client, "operator-a")

    review = client.get("/operator/sales")
    everything = client.get("/operator/sales?view=all&days=7")
    bars = re.findall(
        r'class="chart-bar"[^>]*data-day="([\d-]+)" data-fen="(\d+)"', everything.text
    )

    assert review.status_code == 200
    assert str(flagged.sale_id) in review.text
    assert review.text.count('data-sale="') == 1
    assert "重量无法唯一识别" in review.text
    assert everything.text.count('data-sale="') == 2
    assert len(bars) == 7
    assert bars[-1] == (datetime.now(SHANGHAI).date().isoformat(), "2580")
    assert "合计 ¥25.80，2 笔" in everything.text


def test_daily_sales_use_shanghai_days(
    shop: Shop, shop_client: TestClient, seeded: sessionmaker[Session]
) -> None:
    today = datetime.now(SHANGHAI).date()
    # 16:30 UTC is 00:30 of the next day in Shanghai.
    late = datetime.combine(today - timedelta(days=2), datetime.min.time(), UTC).replace(
        hour=16, minute=30
    )
    settle_sale(shop_client, shop, seeded, recorded_at=late)
    actor = Actor.system("test")

    with seeded() as session:
        days = daily_sales(session, actor, days=3, kiosk_id=None, today=today)

    assert [(day.day, day.count, day.total_fen) for day in days] == [
        (today - timedelta(days=2), 0, 0),
        (today - timedelta(days=1), 1, 1290),
        (today, 0, 0),
    ]


def test_chart_axis_steps() -> None:
    chart = sales_chart([])

    assert [nice_step(value, 4) for value in (0, 3, 9, 41, 130, 999)] == [1, 1, 5, 20, 50, 500]
    assert chart.bars == []
    assert [label for _, label in chart.ticks] == ["0", "1"]


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("12.5", 1250),
        ("12.50", 1250),
        ("0.07", 7),
        ("3", 300),
        (" 8.1 ", 810),
        ("1.234", None),
        ("-1", None),
        ("1,000", None),
        ("", None),
        ("\uff11\uff12", None),  # full-width digits
        ("1e3", None),
    ],
)
def test_parse_yuan(text: str, fen: int | None) -> None:
    assert parse_yuan(text) == fen


# --- Provisioning ---------------------------------------------------------------------------


def test_provisioning_shows_password_and_sticker(
    page: Page,
    base_url: str,
    world: World,
    settings: ServerSettings,
    seeded: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    sign_in(page, base_url, "operator-a")
    page.goto(f"{base_url}/operator/provision")
    page.fill("#kiosk_id", "AH-123")
    page.click("button[type=submit].primary")
    bad_id = page.inner_text("#kiosk_id-error")
    no_placement = page.inner_text("#placement_id-error")
    kept_id = page.input_value("#kiosk_id")

    page.fill("#kiosk_id", world.a.kiosk_id)
    page.select_option("#placement_id", str(world.a.placement_id))
    page.click("button[type=submit].primary")
    taken = page.inner_text("#kiosk_id-error")

    page.fill("#kiosk_id", "ah-10357-0002")
    page.select_option("#placement_id", str(world.a.placement_id))
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.click("button[type=submit].primary")
    cache_control = posted.value.headers.get("cache-control")
    password = page.inner_text("[data-testid=broker-password]")
    sticker_text = page.inner_text("[data-testid=sticker]")
    sticker_url = page.text_content("[data-testid=sticker] desc")
    with page.expect_download() as download:
        page.click("[data-testid=download-config]")
    config_path = tmp_path / download.value.suggested_filename
    download.value.save_as(config_path)
    config = tomllib.loads(config_path.read_text(encoding="utf-8"))
    page.goto(f"{base_url}/operator/cabinets/AH-10357-0002/sticker")
    page.wait_for_load_state("load")
    sticker_width = page.eval_on_selector("[data-testid=sticker-image]", "img => img.naturalWidth")
    with seeded() as session:
        cabinet = session.scalars(
            sa.select(Cabinet).where(Cabinet.kiosk_id == "AH-10357-0002")
        ).one()
        password_hash = cabinet.broker_password_hash

    assert bad_id == "柜号格式为 AH-五位数字-四位数字，如 AH-10357-0001"
    assert no_placement == "请选择点位"
    assert kept_id == "AH-123"
    assert taken == f"智能专柜已存在：kiosk_id = {world.a.kiosk_id}"
    assert cache_control == "no-store"
    assert len(password) == 32
    assert password_hash is not None
    assert verify_mosquitto_password(password_hash, password)
    assert config["kiosk_id"] == "AH-10357-0002"
    assert config["broker_password"] == password
    assert config_path.name == "AH-10357-0002.agent.toml"
    assert "柜号：AH-10357-0002" in sticker_text
    assert sticker_url == f"{settings.public_url.rstrip('/')}/k/AH-10357-0002"
    assert sticker_width > 0


def test_forms_need_the_csrf_token(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    signed_in_client(client, "operator-a")

    response = client.post(
        "/operator/provision",
        data={"kiosk_id": "AH-10357-0009", "placement_id": str(world.a.placement_id)},
    )
    with seeded() as session:
        created = session.scalar(sa.select(Cabinet.id).where(Cabinet.kiosk_id == "AH-10357-0009"))

    assert response.status_code == 403
    assert "页面已过期" in response.text
    assert created is None


# --- Language and screen size ---------------------------------------------------------------


def test_english_pages_keep_only_data_chinese(
    page: Page,
    shop_url: str,
    shop: Shop,
    shop_client: TestClient,
    seeded: sessionmaker[Session],
    products: dict[str, int],
) -> None:
    kiosk = shop.kiosk_id
    record = settle_sale(shop_client, shop, seeded, review_reasons=("unexplained_weight",))
    with session_scope(seeded) as session:
        save_layout(session, kiosk, (0, 20, [products["rice"]]), (1, 10, [shop.products[0].id]))
    report_online(seeded, kiosk, doors=OPEN_DOOR)
    report_event(seeded, kiosk, EventType.DOOR_FORCED, door=0)
    report_event(seeded, kiosk, EventType.SCALE_FAULT, shelf=1, fault="overload")
    sign_in(page, shop_url, "operator-a")
    page.goto(f"{shop_url}/operator")
    chinese_heading = page.inner_text("h1")
    page.click("[data-testid=lang-switch]")
    english_heading = page.inner_text("h1")
    wait_for_poll(page)
    leftovers = {"/operator": untranslated_texts(page)}
    paths = [
        "/operator/map",
        "/operator/stock",
        "/operator/restock",
        f"/operator/cabinets/{kiosk}",
        f"/operator/cabinets/{kiosk}/planogram",
        "/operator/sales?view=all",
        f"/operator/sales/{record.sale_id}",
        "/operator/provision",
        f"/operator/cabinets/{kiosk}/sticker",
    ]
    for path in paths:
        page.goto(shop_url + path)
        leftovers[path] = untranslated_texts(page)
    page.goto(f"{shop_url}/operator/cabinets/{kiosk}/planogram")
    page.select_option("#shelves-0-product-0", str(products["tea"]))
    page.click("button[value='add_product:0']")
    page.select_option("#shelves-0-product-1", str(products["rice"]))
    page.click("[data-testid=save-planogram]")
    verdict = page.inner_text("[data-testid=shelf-conflicts]")
    leftovers["planogram verdict"] = untranslated_texts(page)
    page.goto(f"{shop_url}/operator/provision")
    page.fill("#kiosk_id", "AH-10357-0077")
    page.select_option("#placement_id", str(shop.world.a.placement_id))
    page.click("button[type=submit].primary")
    page.wait_for_selector("[data-testid=broker-password]")
    leftovers["provisioned"] = untranslated_texts(page)

    assert chinese_heading == "车队看板"
    assert english_heading == "Fleet board"
    assert "cannot be told apart" in verdict
    assert {path: texts for path, texts in leftovers.items() if texts} == {}


@pytest.mark.parametrize(
    "path", ["/operator", "/operator/map", "/operator/sales", "/operator/provision"]
)
def test_pages_fit_a_phone(phone: Page, base_url: str, campus: Campus, path: str) -> None:
    sign_in(phone, base_url, "operator-a")
    phone.goto(base_url + path)

    overflow = phone.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )

    assert overflow <= 0


# --- Acceptance: a fault at the board reaches the page ----------------------------------------


@pytest.mark.mosquitto
@pytest.mark.timeout(300)
def test_board_shows_forced_door_within_5_s(
    page: Page, mqtt_broker: tuple[str, int], tmp_path: Path
) -> None:
    with campus_stack(mqtt_broker, tmp_path) as stack:
        page.goto(f"{stack.base_url}/login")
        page.fill("#username", stack.operator_username)
        page.fill("#password", stack.password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{stack.base_url}/operator")
        before = {
            "connection": card_text(page, stack.kiosk_id, "connection"),
            "doors": card_text(page, stack.kiosk_id, "doors"),
            "alerts": page.inner_text("[data-testid=alert-list]"),
        }

        with ControlClient(stack.control_path) as control:
            injected_at = time.monotonic()
            control.request("force_door", door=0)
        page.wait_for_function(
            """([kiosk, title]) => {
                const card = document.querySelector(`[data-kiosk="${kiosk}"]`);
                return card.querySelector('[data-field="alerts"]').textContent.includes(title)
                    && document.getElementById('alert-list').textContent.includes(title);
            }""",
            arg=[stack.kiosk_id, "柜门 0 被强行打开"],
            timeout=30_000,
            polling=50,
        )
        shown_after_s = time.monotonic() - injected_at
        condition = page.get_attribute(f'[data-kiosk="{stack.kiosk_id}"]', "data-condition")
        # The door's position comes with telemetry: the agent samples its doors every
        # 2 s while idle and reports them with its next heartbeat, so no bound here.
        page.wait_for_function(
            """kiosk => document.querySelector(`[data-kiosk="${kiosk}"] [data-field="doors"]`)
                .textContent === '打开'""",
            arg=stack.kiosk_id,
            timeout=30_000,
        )

    assert before == {"connection": "在线", "doors": "关闭", "alerts": ""}
    assert shown_after_s <= FAULT_SHOWN_WITHIN_S, f"shown {shown_after_s:.1f} s after injection"
    assert condition == "attention"


# --- Screenshots for the docs ---------------------------------------------------------------


@pytest.mark.skipif(
    not os.environ.get(SCREENSHOTS_ENV), reason=f"set {SCREENSHOTS_ENV}=DIR to write screenshots"
)
def test_write_screenshots(
    browser: Browser,
    shop_url: str,
    shop: Shop,
    shop_client: TestClient,
    seeded: sessionmaker[Session],
    products: dict[str, int],
    database_url: str,
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("one set of screenshots is enough")
    out = Path(os.environ[SCREENSHOTS_ENV])
    out.mkdir(parents=True, exist_ok=True)
    campus = build_campus(shop.world, seeded)

    top_up = shop_client.post(
        f"/api/v1/wallets/{shop.student_id}/top-ups",
        json={"amount_fen": 100_000},
        headers=shop.headers["province_admin"],
    )
    assert top_up.status_code == 201, top_up.json()

    now = utc_now()
    daily_packs = [(1, 1), (2, 0), (3, 1), (1, 2), (0, 1), (2, 2), (4, 1), (1, 0), (3, 3), (2, 1)]
    for days_ago, packs in zip([13, 11, 10, 8, 7, 5, 4, 2, 1, 0], daily_packs, strict=True):
        settle_sale(
            shop_client, shop, seeded, packs=packs, recorded_at=now - timedelta(days=days_ago)
        )
    settle_sale(shop_client, shop, seeded, review_reasons=("ambiguous_weight",))

    report_event(seeded, campus.door_open, EventType.DOOR_FORCED, door=0)
    report_event(seeded, campus.ok, EventType.SCALE_FAULT, shelf=2, fault="overload")

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    try:
        sign_in(page, shop_url, "operator-a")
        page.goto(f"{shop_url}/operator")
        wait_for_poll(page)
        page.screenshot(path=str(out / "operator-board.png"), full_page=True)

        page.goto(f"{shop_url}/operator/map")
        page.screenshot(path=str(out / "operator-map.png"), full_page=True)

        page.goto(f"{shop_url}/operator/cabinets/{shop.kiosk_id}/planogram")
        page.select_option("#shelves-0-product-0", str(products["rice"]))
        page.click("button[value='add_product:0']")
        page.select_option("#shelves-0-product-1", str(products["tea"]))
        page.click("button[value='add_shelf']")
        page.select_option("#shelves-1-product-0", str(products["oil"]))
        page.click("[data-testid=save-planogram]")
        page.screenshot(path=str(out / "operator-planogram.png"), full_page=True)

        page.goto(f"{shop_url}/operator/sales?view=all")
        page.screenshot(path=str(out / "operator-sales.png"), full_page=True)
    finally:
        context.close()
