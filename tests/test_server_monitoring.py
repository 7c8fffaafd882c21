"""Monitoring handlers: online/offline, telemetry, stock, restock lists, and the MQTT subscriber."""

import socket
import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.db import session_scope
from fleet_server.messaging.publisher import BrokerAddress, RecordingPublisher
from fleet_server.models import (
    Alert,
    AlertCondition,
    AlertKind,
    AlertState,
    Cabinet,
    CabinetState,
    CabinetStock,
    ConnectionState,
    OfflineReason,
    Placement,
    Planogram,
    StockSource,
)
from fleet_server.monitoring.subscriber import MonitoringSubscriber
from fleet_server.services.monitoring import (
    MonitoringPolicy,
    apply_sales_to_stock,
    handle_event,
    handle_status,
    handle_telemetry,
    sweep,
)
from kiosk_agent.contract import (
    Channel,
    EventType,
    KioskEvent,
    KioskState,
    OutboxBacklog,
    PlanogramCommand,
    SaleLine,
    SaleOutcome,
    SaleRecord,
    SerialLinkState,
    ShelfTelemetry,
    StockLine,
    encode_payload,
    kiosk_topic,
    utc_now,
)
from operations_helpers import (
    add_product,
    at,
    cabinet,
    event,
    give_key,
    save_layout,
    status,
    telemetry,
)
from server_helpers import World

pytest_plugins = ["server_fixtures"]

POLICY = MonitoringPolicy.default()
WAIT_S = 10.0


def alerts_of(session: Session, kind: AlertKind) -> list[Alert]:
    return list(session.scalars(sa.select(Alert).where(Alert.kind == kind).order_by(Alert.id)))


def state_of(session: Session, kiosk_id: str) -> CabinetState:
    state = session.get(CabinetState, cabinet(session, kiosk_id).id)
    assert state is not None
    return state


# --- Online and offline ---------------------------------------------------------------------


def test_online_status_marks_cabinet_online(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        handle_status(session, status(kiosk, KioskState.ONLINE, at(-5)), received_at=at(0))

    with session_scope(seeded) as session:
        state = state_of(session, kiosk)
        assert state.connection is ConnectionState.ONLINE
        assert state.connection_since == at(-5)
        assert state.last_seen_at == at(0)
        assert cabinet(session, kiosk).online is True
        assert cabinet(session, kiosk).last_seen_at == at(0)


def test_last_will_alerts_after_two_minutes(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        handle_status(session, status(kiosk, KioskState.ONLINE, at(-5)), received_at=at(0))
        handle_status(session, status(kiosk, KioskState.OFFLINE, None), received_at=at(10))

    with session_scope(seeded) as session:
        state = state_of(session, kiosk)
        assert state.connection is ConnectionState.OFFLINE
        assert state.offline_reason is OfflineReason.LAST_WILL
        assert state.connection_since == at(10)
        assert cabinet(session, kiosk).online is False
        sweep(session, now=at(10 + 119), policy=POLICY)
        assert alerts_of(session, AlertKind.OFFLINE) == []
        sweep(session, now=at(10 + 120), policy=POLICY)
        [alert] = alerts_of(session, AlertKind.OFFLINE)
        assert alert.state is AlertState.OPEN
        assert alert.raised_at == at(130)
        assert alert.detail["reason"] == "last_will"


def test_goodbye_status_is_disconnected(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        handle_status(session, status(kiosk, KioskState.OFFLINE, at(3)), received_at=at(4))

        state = state_of(session, kiosk)
        assert state.offline_reason is OfflineReason.DISCONNECTED
        assert state.connection_since == at(3)


def test_older_retained_status_ignored(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        handle_status(session, status(kiosk, KioskState.OFFLINE, at(20)), received_at=at(21))
        handle_status(session, status(kiosk, KioskState.ONLINE, at(5)), received_at=at(22))

        assert state_of(session, kiosk).connection is ConnectionState.OFFLINE


def test_silent_cabinet_goes_offline_after_missed_heartbeats(
    world: World, seeded: sessionmaker[Session]
) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        handle_telemetry(session, telemetry(kiosk, at(0)), received_at=at(0))

        early = sweep(session, now=at(89), policy=POLICY)
        late = sweep(session, now=at(91), policy=POLICY)

        assert POLICY.offline_after_s == 90
        assert early.marked_offline == []
        assert late.marked_offline == [kiosk]
        state = state_of(session, kiosk)
        assert state.offline_reason is OfflineReason.HEARTBEAT_TIMEOUT
        assert state.connection_since == at(0)
        # The alert counts from the last heartbeat, not from the sweep that noticed.
        sweep(session, now=at(119), policy=POLICY)
        assert alerts_of(session, AlertKind.OFFLINE) == []
        sweep(session, now=at(121), policy=POLICY)
        assert len(alerts_of(session, AlertKind.OFFLINE)) == 1


def test_offline_alert_resolves_after_clear_period(
    world: World, seeded: sessionmaker[Session]
) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        handle_status(session, status(kiosk, KioskState.OFFLINE, None), received_at=at(0))
        sweep(session, now=at(200), policy=POLICY)
        handle_status(session, status(kiosk, KioskState.ONLINE, at(300)), received_at=at(300))
        for second in (330, 360, 390, 418):
            handle_telemetry(session, telemetry(kiosk, at(second)), received_at=at(second))

        sweep(session, now=at(419), policy=POLICY)
        [alert] = alerts_of(session, AlertKind.OFFLINE)
        assert alert.state is AlertState.OPEN
        sweep(session, now=at(421), policy=POLICY)

        assert alert.state is AlertState.RESOLVED
        assert alert.resolved_by == "system:monitor"
        assert alert.resolved_at == at(421)


def test_short_outage_raises_no_alert(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        handle_status(session, status(kiosk, KioskState.OFFLINE, None), received_at=at(0))
        handle_status(session, status(kiosk, KioskState.ONLINE, at(60)), received_at=at(60))
        # Past the 120 s an outage needs, before the 90 s heartbeat timeout after 60 s.
        sweep(session, now=at(140), policy=POLICY)

        assert alerts_of(session, AlertKind.OFFLINE) == []


def test_online_resends_planogram(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    publisher = RecordingPublisher()
    with session_scope(seeded) as session:
        give_key(session, kiosk)
        tea = add_product(session, "岳西翠兰", weight_g=100, tolerance_g=1)
        save_layout(session, kiosk, (0, 10, [tea.id]))

        handle_status(
            session,
            status(kiosk, KioskState.ONLINE, at(0)),
            received_at=at(0),
            publisher=publisher,
        )

        assert state_of(session, kiosk).planogram_resent_at == at(0)
    [command] = publisher.commands
    assert isinstance(command, PlanogramCommand)
    assert command.version == 1


# --- Telemetry ------------------------------------------------------------------------------


def test_telemetry_updates_live_state(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    beat = telemetry(
        kiosk,
        at(0),
        backlog=OutboxBacklog(sales=3, events=1, oldest_created_at=at(-30)),
        disk_free_bytes=5_000_000_000,
        session_state="door_open",
        planogram_version=4,
    )

    with session_scope(seeded) as session:
        handle_telemetry(session, beat, received_at=at(1))

    with session_scope(seeded) as session:
        state = state_of(session, kiosk)
        assert state.connection is ConnectionState.ONLINE
        assert state.last_telemetry_at == at(1)
        assert state.telemetry_reported_at == at(0)
        assert state.doors == [{"door": 0, "lock": "locked", "position": "closed"}]
        assert state.shelves[1] == {"shelf": 1, "weight_mg": 0, "stable": True, "fault": False}
        assert (state.backlog_sales, state.backlog_events) == (3, 1)
        assert state.backlog_oldest_reported_at == at(-30)
        assert state.firmware_version == "1.4.2"
        assert state.serial_link_up is True
        assert state.session_state == "door_open"
        assert state.planogram_version == 4
        assert state.disk_free_bytes == 5_000_000_000
        assert cabinet(session, kiosk).firmware_version == "1.4.2"


def test_older_telemetry_ignored(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        handle_telemetry(session, telemetry(kiosk, at(30), disk_free_bytes=111), received_at=at(31))
        handle_telemetry(session, telemetry(kiosk, at(0), disk_free_bytes=222), received_at=at(32))

        assert state_of(session, kiosk).disk_free_bytes == 111


def test_backlog_alert_needs_persistence(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    backlog = OutboxBacklog(sales=150, events=0, oldest_created_at=at(-10))
    with session_scope(seeded) as session:
        handle_telemetry(session, telemetry(kiosk, at(0), backlog=backlog), received_at=at(0))
        handle_telemetry(session, telemetry(kiosk, at(30), backlog=backlog), received_at=at(30))
        assert alerts_of(session, AlertKind.OUTBOX_BACKLOG) == []
        handle_telemetry(session, telemetry(kiosk, at(60), backlog=backlog), received_at=at(60))

        [alert] = alerts_of(session, AlertKind.OUTBOX_BACKLOG)
        assert alert.detail["messages"] == 150
        assert alert.raised_at == at(60)


def test_old_backlog_message_alerts(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    backlog = OutboxBacklog(sales=1, events=0, oldest_created_at=at(-1000))
    with session_scope(seeded) as session:
        for second in (0, 30, 60):
            beat = telemetry(kiosk, at(second), backlog=backlog)
            handle_telemetry(session, beat, received_at=at(second))

        [alert] = alerts_of(session, AlertKind.OUTBOX_BACKLOG)
        assert alert.detail["oldest_age_s"] == 1060


def test_disk_and_serial_link_alerts(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        for second in (0, 30, 60):
            beat = telemetry(
                kiosk, at(second), disk_free_bytes=10_000_000, serial_link=SerialLinkState.DOWN
            )
            handle_telemetry(session, beat, received_at=at(second))

        assert len(alerts_of(session, AlertKind.DISK_FULL)) == 1
        assert len(alerts_of(session, AlertKind.SERIAL_LINK_DOWN)) == 1
        for second in (90, 120, 211):
            handle_telemetry(session, telemetry(kiosk, at(second)), received_at=at(second))
        assert alerts_of(session, AlertKind.DISK_FULL)[0].state is AlertState.RESOLVED
        assert alerts_of(session, AlertKind.SERIAL_LINK_DOWN)[0].state is AlertState.RESOLVED


# --- Stock ----------------------------------------------------------------------------------


def restock(kiosk: str, when: int, lines: list[tuple[int, int, int]]) -> KioskEvent:
    return event(
        kiosk,
        EventType.RESTOCK,
        at(when),
        stock=[
            StockLine(shelf=shelf, product_id=str(product), quantity=quantity)
            for shelf, product, quantity in lines
        ],
    )


def test_restock_sale_and_low_stock(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        tea = add_product(session, "岳西翠兰", weight_g=100, tolerance_g=1)
        honey = add_product(session, "金寨蜂蜜", weight_g=260, tolerance_g=2)
        save_layout(session, kiosk, (0, 20, [tea.id, honey.id]))
        refill = restock(kiosk, 0, [(0, tea.id, 10), (0, honey.id, 10)])
        handle_event(session, refill, received_at=at(0))
        sale = SaleRecord(
            sale_id=uuid.uuid4(),
            kiosk_id=kiosk,
            session_id=uuid.uuid4(),
            outcome=SaleOutcome.COMPLETED,
            opened_at=at(5),
            closed_at=at(9),
            recorded_at=at(10),
            planogram_version=1,
            lines=[SaleLine(product_id=str(tea.id), quantity=8, unit_price_fen=1000, shelf=0)],
        )

        apply_sales_to_stock(session, [(sale, at(10))])

        stock = {
            row.product_id: (row.quantity, row.source)
            for row in session.scalars(sa.select(CabinetStock))
        }
        assert stock == {tea.id: (2, StockSource.SALE), honey.id: (10, StockSource.RESTOCK)}
        # 2 packs < 25 % of the tea's share of 10: low, but it must persist first.
        assert alerts_of(session, AlertKind.LOW_STOCK) == []
        handle_telemetry(session, telemetry(kiosk, at(80)), received_at=at(80))
        [alert] = alerts_of(session, AlertKind.LOW_STOCK)
        assert alert.subject == f"shelf:0/product:{tea.id}"
        assert alert.detail["quantity"] == 2
        assert alert.detail["target"] == 10

        handle_event(session, restock(kiosk, 100, [(0, tea.id, 10)]), received_at=at(100))
        handle_telemetry(session, telemetry(kiosk, at(230)), received_at=at(230))
        assert alert.state is AlertState.RESOLVED


def test_restock_skips_unknown_products(
    world: World, seeded: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        tea = add_product(session, "岳西翠兰", weight_g=100, tolerance_g=1)
        save_layout(session, kiosk, (0, 20, [tea.id]))
        unknown = tea.id + 1_000
        refill = restock(kiosk, 0, [(0, tea.id, 10), (0, unknown, 5)])
        barcode = event(
            kiosk,
            EventType.RESTOCK,
            at(1),
            stock=[
                StockLine(shelf=0, product_id=str(tea.id), quantity=12),
                StockLine(shelf=1, product_id="6901234567892", quantity=3),
            ],
        )

        handle_event(session, refill, received_at=at(0))
        after_unknown = {
            row.product_id: row.quantity for row in session.scalars(sa.select(CabinetStock))
        }
        handle_event(session, barcode, received_at=at(1))
        after_barcode = {
            row.product_id: row.quantity for row in session.scalars(sa.select(CabinetStock))
        }

    assert after_unknown == {tea.id: 10}
    assert after_barcode == {tea.id: 12}
    skipped = [r.getMessage() for r in caplog.records if "not in the catalog" in r.getMessage()]
    assert len(skipped) == 2
    assert f"names product '{unknown}'" in skipped[0]
    assert "names product '6901234567892'" in skipped[1]


def tea_sale(kiosk: str, product_id: int, quantity: int, second: int) -> SaleRecord:
    return SaleRecord(
        sale_id=uuid.uuid4(),
        kiosk_id=kiosk,
        session_id=uuid.uuid4(),
        outcome=SaleOutcome.COMPLETED,
        opened_at=at(second - 5),
        closed_at=at(second - 1),
        recorded_at=at(second),
        planogram_version=1,
        lines=[
            SaleLine(product_id=str(product_id), quantity=quantity, unit_price_fen=1000, shelf=0)
        ],
    )


def test_sales_batch_takes_sum_off_stock(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        tea = add_product(session, "岳西翠兰", weight_g=100, tolerance_g=1)
        honey = add_product(session, "金寨蜂蜜", weight_g=260, tolerance_g=2)
        save_layout(session, kiosk, (0, 20, [tea.id, honey.id]))
        handle_event(
            session, restock(kiosk, 0, [(0, tea.id, 10), (0, honey.id, 10)]), received_at=at(0)
        )

        # Three sales of one batch: 3 + 4 teas, and one honey.
        apply_sales_to_stock(
            session,
            [
                (tea_sale(kiosk, tea.id, 3, 10), at(11)),
                (tea_sale(kiosk, honey.id, 1, 20), at(21)),
                (tea_sale(kiosk, tea.id, 4, 30), at(31)),
            ],
        )

        stock = {
            row.product_id: (row.quantity, row.updated_at)
            for row in session.scalars(sa.select(CabinetStock))
        }
        assert stock == {tea.id: (3, at(31)), honey.id: (9, at(31))}
        # 3 teas are not below 25 % of their share of 10, so nothing is low and no
        # condition row is written.
        conditions = session.scalars(sa.select(AlertCondition)).all()
        assert conditions == []

        apply_sales_to_stock(session, [(tea_sale(kiosk, tea.id, 2, 40), at(41))])

        [condition] = session.scalars(sa.select(AlertCondition)).all()
        assert condition.subject == f"shelf:0/product:{tea.id}"
        assert condition.active is True
        assert condition.active_since == at(41)
        assert condition.detail["quantity"] == 1


def test_single_product_shelf_counted_by_weight(
    world: World, seeded: sessionmaker[Session]
) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        rice = add_product(session, "霍邱大米", weight_g=200, tolerance_g=1)
        version = save_layout(session, kiosk, (1, 12, [rice.id]))
        shelves = [ShelfTelemetry(shelf=1, weight_mg=1_401_000, stable=True, fault=False)]

        busy = telemetry(
            kiosk, at(0), shelves=shelves, planogram_version=version, session_state="door_open"
        )
        handle_telemetry(session, busy, received_at=at(0))
        assert session.scalars(sa.select(CabinetStock)).all() == []
        idle = telemetry(kiosk, at(30), shelves=shelves, planogram_version=version)
        handle_telemetry(session, idle, received_at=at(30))

        [row] = session.scalars(sa.select(CabinetStock)).all()
        assert (row.shelf, row.product_id, row.quantity) == (1, rice.id, 7)
        assert row.source is StockSource.WEIGHT
        planogram = session.scalar(sa.select(Planogram))
        assert planogram is not None
        assert planogram.applied_at == at(0)


def test_outdated_planogram_resent_at_most_every_interval(
    world: World, seeded: sessionmaker[Session]
) -> None:
    kiosk = world.a.kiosk_id
    publisher = RecordingPublisher()
    with session_scope(seeded) as session:
        give_key(session, kiosk)
        tea = add_product(session, "岳西翠兰", weight_g=100, tolerance_g=1)
        save_layout(session, kiosk, (0, 10, [tea.id]))
        for second in (0, 30, 599, 600):
            beat = telemetry(kiosk, at(second), planogram_version=None)
            handle_telemetry(session, beat, received_at=at(second), publisher=publisher)

    assert len(publisher.commands) == 2


# --- API ------------------------------------------------------------------------------------


def test_fleet_list_filters_and_scope(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    with session_scope(seeded) as session:
        handle_status(
            session, status(world.a.kiosk_id, KioskState.ONLINE, at(0)), received_at=at(0)
        )
        handle_telemetry(session, telemetry(world.a.kiosk_id, at(1)), received_at=at(1))

    province = client.get("/api/v1/fleet/cabinets", headers=world.headers["province_admin"])
    online = client.get(
        "/api/v1/fleet/cabinets?state=online", headers=world.headers["province_admin"]
    )
    unknown = client.get(
        "/api/v1/fleet/cabinets?state=unknown", headers=world.headers["province_admin"]
    )
    canteens = client.get(
        "/api/v1/fleet/cabinets?location_type=canteen", headers=world.headers["province_admin"]
    )
    operator_b = client.get("/api/v1/fleet/cabinets", headers=world.headers["operator_b"])
    school_a = client.get(
        f"/api/v1/fleet/cabinets?school_id={world.b.school_id}",
        headers=world.headers["school_admin_a"],
    )

    assert province.json()["total"] == 2
    [row] = online.json()["items"]
    assert row["kiosk_id"] == world.a.kiosk_id
    assert row["school_name"] == "安徽大学"
    assert row["location_type"] == "dormitory"
    assert row["doors_closed"] is True
    assert row["lock_faults"] == 0
    assert row["backlog_messages"] == 0
    assert row["firmware_version"] == "1.4.2"
    assert [item["kiosk_id"] for item in unknown.json()["items"]] == [world.b.kiosk_id]
    assert canteens.json()["total"] == 0
    assert [item["kiosk_id"] for item in operator_b.json()["items"]] == [world.b.kiosk_id]
    assert school_a.json()["total"] == 0


def test_cabinet_live_state_and_restock_list(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        tea = add_product(session, "岳西翠兰", weight_g=100, tolerance_g=1)
        honey = add_product(session, "金寨蜂蜜", weight_g=260, tolerance_g=2)
        rice = add_product(session, "霍邱大米", weight_g=200, tolerance_g=1)
        save_layout(session, kiosk, (0, 21, [tea.id, honey.id]), (1, 12, [rice.id]))
        refill = restock(kiosk, 0, [(0, tea.id, 1), (0, honey.id, 10)])
        handle_event(session, refill, received_at=at(0))
        misplaced = event(
            kiosk, EventType.ITEM_MISPLACED, at(5), {"product_id": str(tea.id), "shelf": 1}
        )
        handle_event(session, misplaced, received_at=at(5))
        ids = (tea.id, honey.id, rice.id)

    live = client.get(f"/api/v1/fleet/cabinets/{kiosk}", headers=world.headers["operator_a"])
    restock_list = client.get("/api/v1/restock", headers=world.headers["operator_a"])
    other = client.get("/api/v1/restock", headers=world.headers["operator_b"])

    assert live.status_code == 200, live.json()
    stock = {(line["shelf"], line["product_id"]): line for line in live.json()["stock"]}
    assert stock[(0, ids[0])]["quantity"] == 1
    assert stock[(0, ids[0])]["target"] == 11
    assert stock[(0, ids[0])]["low"] is True
    assert stock[(0, ids[1])]["target"] == 10
    assert stock[(0, ids[1])]["low"] is False
    assert stock[(1, ids[2])]["quantity"] is None
    assert live.json()["misplaced"] == [
        {"product_id": str(ids[0]), "shelf": 1, "at": at(5).isoformat()}
    ]
    body = restock_list.json()
    [entry] = body["cabinets"]
    assert entry["kiosk_id"] == kiosk
    items = {(item["shelf"], item["product_id"]): item["to_bring"] for item in entry["items"]}
    assert items == {(0, ids[0]): 10, (1, ids[2]): 12}
    assert entry["misplaced"][0]["shelf"] == 1
    assert {total["product_id"]: total["to_bring"] for total in body["totals"]} == {
        ids[0]: 10,
        ids[2]: 12,
    }
    assert other.json()["cabinets"] == []


# --- Through Mosquitto ----------------------------------------------------------------------


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.mosquitto
def test_subscriber_follows_last_will(
    mqtt_broker: tuple[str, int], world: World, seeded: sessionmaker[Session]
) -> None:
    kiosk = f"AH-E2E-{uuid.uuid4().hex[:8]}"
    with session_scope(seeded) as session:
        placement = session.get(Placement, world.a.placement_id)
        session.add(Cabinet(kiosk_id=kiosk, placement=placement, operator_id=world.operator_a_id))
        session.flush()
        give_key(session, kiosk)
        tea = add_product(session, "岳西翠兰", weight_g=100, tolerance_g=1)
        save_layout(session, kiosk, (0, 10, [tea.id]))
    publisher = RecordingPublisher()
    monitor = MonitoringSubscriber(
        BrokerAddress(*mqtt_broker), seeded, policy=POLICY, publisher=publisher
    )
    monitor.start()

    # A cabinet whose connection ends without DISCONNECT: the broker publishes its will.
    connected = threading.Event()

    def on_connect(
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        connected.set()

    status_topic = kiosk_topic(kiosk, Channel.STATUS)
    agent = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=kiosk)
    agent.on_connect = on_connect
    agent.will_set(
        status_topic, encode_payload(status(kiosk, KioskState.OFFLINE, None)), qos=1, retain=True
    )
    try:
        agent.connect(*mqtt_broker)
        agent.loop_start()
        assert connected.wait(WAIT_S)
        agent.publish(
            status_topic,
            encode_payload(status(kiosk, KioskState.ONLINE, utc_now())),
            qos=1,
            retain=True,
        ).wait_for_publish(WAIT_S)
        agent.publish(
            kiosk_topic(kiosk, Channel.TELEMETRY),
            encode_payload(telemetry(kiosk, at(1), firmware_version="2.0.1")),
            qos=0,
        )

        def online() -> bool:
            with session_scope(seeded) as session:
                state = session.get(CabinetState, cabinet(session, kiosk).id)
                return (
                    state is not None
                    and state.connection is ConnectionState.ONLINE
                    and state.firmware_version == "2.0.1"
                )

        wait_until(online, "the online status and the telemetry")
        agent.loop_stop()
        sock = agent.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

        def offline() -> bool:
            with session_scope(seeded) as session:
                state = session.get(CabinetState, cabinet(session, kiosk).id)
                return state is not None and state.offline_reason is OfflineReason.LAST_WILL

        wait_until(offline, "the last will")
    finally:
        monitor.stop()
        cleaner = mqtt.Client(CallbackAPIVersion.VERSION2)
        cleaner.connect(*mqtt_broker)
        cleaner.loop_start()
        cleaner.publish(status_topic, b"", qos=1, retain=True).wait_for_publish(WAIT_S)
        cleaner.loop_stop()
        cleaner.disconnect()

    with session_scope(seeded) as session:
        assert cabinet(session, kiosk).online is False
    assert monitor.stats.failed == 0
    assert monitor.stats.invalid == 0
    commands = [c for c in publisher.commands if isinstance(c, PlanogramCommand)]
    assert [c.kiosk_id for c in commands] == [kiosk]
