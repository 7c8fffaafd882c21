"""Alerts: events, de-duplication, hysteresis, stale events, and the acknowledge/resolve API."""

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.db import session_scope
from fleet_server.models import Alert, AlertKind, AlertState, CabinetServiceStatus
from fleet_server.services.audit import list_audit_entries
from fleet_server.services.monitoring import MonitoringPolicy, handle_event, handle_telemetry, sweep
from kiosk_agent.contract import EventType, SerialLinkState, ShelfTelemetry
from operations_helpers import at, cabinet, event, telemetry
from server_helpers import World

pytest_plugins = ["server_fixtures"]

POLICY = MonitoringPolicy.default()


def alerts(session: Session, kind: AlertKind | None = None) -> list[Alert]:
    """Return the alerts, of one kind if given; a long sweep also raises offline alerts."""
    statement = sa.select(Alert).order_by(Alert.id)
    if kind is not None:
        statement = statement.where(Alert.kind == kind)
    return list(session.scalars(statement))


def test_door_forced_raises_once_and_counts(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        for second in (0, 40):
            forced = event(kiosk, EventType.DOOR_FORCED, at(second), {"door": 0})
            handle_event(session, forced, received_at=at(second + 1))
        sweep(session, now=at(100_000), policy=POLICY)

        [alert] = alerts(session, AlertKind.DOOR_FORCED)
        assert alert.kind is AlertKind.DOOR_FORCED
        assert alert.subject == "door:0"
        assert alert.state is AlertState.OPEN
        assert alert.occurrences == 2
        assert alert.raised_at == at(1)
        assert alert.last_seen_at == at(41)


def test_scale_fault_resolves_after_recovery(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        fault = event(kiosk, EventType.SCALE_FAULT, at(0), {"shelf": 2, "fault": "overload"})
        handle_event(session, fault, received_at=at(0))
        [alert] = alerts(session)
        assert alert.subject == "shelf:2"
        assert alert.detail["fault"] == "overload"

        recovered = event(kiosk, EventType.SCALE_RECOVERED, at(50), {"shelf": 2})
        handle_event(session, recovered, received_at=at(50))
        sweep(session, now=at(80), policy=POLICY)
        assert alert.state is AlertState.OPEN
        sweep(session, now=at(170), policy=POLICY)

        assert alert.state is AlertState.RESOLVED
        assert alert.resolved_by == "system:monitor"


def test_fault_returning_during_clear_period_keeps_alert(
    world: World, seeded: sessionmaker[Session]
) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        for second, event_type in ((0, EventType.SCALE_FAULT), (10, EventType.SCALE_RECOVERED)):
            handle_event(
                session, event(kiosk, event_type, at(second), {"shelf": 1}), received_at=at(second)
            )
        handle_event(
            session, event(kiosk, EventType.SCALE_FAULT, at(60), {"shelf": 1}), received_at=at(60)
        )
        sweep(session, now=at(1000), policy=POLICY)

        [alert] = alerts(session, AlertKind.SCALE_FAULT)
        assert alert.state is AlertState.OPEN
        assert alert.occurrences == 2


def test_late_event_does_not_undo_newer_telemetry(
    world: World, seeded: sessionmaker[Session]
) -> None:
    kiosk = world.a.kiosk_id
    faulty = [ShelfTelemetry(shelf=0, weight_mg=0, stable=False, fault=True)]
    with session_scope(seeded) as session:
        handle_telemetry(session, telemetry(kiosk, at(100), shelves=faulty), received_at=at(100))
        late = event(kiosk, EventType.SCALE_RECOVERED, at(50), {"shelf": 0})
        handle_event(session, late, received_at=at(101))
        handle_telemetry(session, telemetry(kiosk, at(130), shelves=faulty), received_at=at(130))
        handle_telemetry(session, telemetry(kiosk, at(160), shelves=faulty), received_at=at(160))

        [alert] = alerts(session)
        assert alert.kind is AlertKind.SCALE_FAULT
        assert alert.state is AlertState.OPEN
        assert alert.raised_at == at(160)


def test_door_left_open_clears_when_closed(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        left = event(kiosk, EventType.DOOR_LEFT_OPEN, at(0), {"door": 0})
        handle_event(session, left, received_at=at(0))
        handle_telemetry(session, telemetry(kiosk, at(30)), received_at=at(30))
        handle_telemetry(session, telemetry(kiosk, at(60)), received_at=at(60))
        handle_telemetry(session, telemetry(kiosk, at(150)), received_at=at(150))

        [alert] = alerts(session)
        assert alert.kind is AlertKind.DOOR_LEFT_OPEN
        assert alert.state is AlertState.RESOLVED
        assert alert.resolved_at == at(150)


def test_retired_cabinet_raises_nothing(world: World, seeded: sessionmaker[Session]) -> None:
    kiosk = world.a.kiosk_id
    with session_scope(seeded) as session:
        cabinet(session, kiosk).service_status = CabinetServiceStatus.RETIRED
        forced = event(kiosk, EventType.DOOR_FORCED, at(0), {"door": 0})
        handle_event(session, forced, received_at=at(0))
        handle_event(session, event(kiosk, EventType.DISK_FULL, at(1)), received_at=at(1))

        assert alerts(session) == []


def test_database_allows_one_unresolved_alert_per_subject(
    world: World, seeded: sessionmaker[Session]
) -> None:
    with session_scope(seeded) as session:
        cabinet_id = cabinet(session, world.a.kiosk_id).id

    def add(state: AlertState) -> None:
        with session_scope(seeded) as session:
            session.add(
                Alert(
                    cabinet_id=cabinet_id,
                    kind=AlertKind.LOCK_FAULT,
                    subject="door:0",
                    state=state,
                    raised_at=at(0),
                    last_seen_at=at(0),
                    occurrences=1,
                    detail={},
                )
            )

    add(AlertState.RESOLVED)
    add(AlertState.RESOLVED)
    add(AlertState.OPEN)
    with pytest.raises(IntegrityError):
        add(AlertState.ACKNOWLEDGED)


# --- API ------------------------------------------------------------------------------------


@pytest.fixture
def forced_alert_id(world: World, seeded: sessionmaker[Session]) -> int:
    with session_scope(seeded) as session:
        forced = event(world.a.kiosk_id, EventType.DOOR_FORCED, at(0), {"door": 1})
        handle_event(session, forced, received_at=at(0))
        [alert] = alerts(session)
        return alert.id


def test_acknowledge_then_resolve_is_audited(
    client: TestClient, world: World, forced_alert_id: int, seeded: sessionmaker[Session]
) -> None:
    headers = world.headers["operator_a"]
    base = f"/api/v1/alerts/{forced_alert_id}"

    listed = client.get("/api/v1/alerts?unresolved=true", headers=headers)
    acknowledged = client.post(f"{base}/acknowledge", json={"note": "已派人查看"}, headers=headers)
    again = client.post(f"{base}/acknowledge", json={}, headers=headers)
    resolved = client.post(f"{base}/resolve", json={"note": "门已修好"}, headers=headers)
    twice = client.post(f"{base}/resolve", json={}, headers=headers)

    [item] = listed.json()["items"]
    assert item["title"] == "柜门 1 被强行打开"
    assert item["title_en"] == "Door 1 forced open"
    assert acknowledged.status_code == 200
    assert acknowledged.json()["state"] == "acknowledged"
    assert acknowledged.json()["acknowledged_by"] == "operator-a"
    assert again.status_code == 409
    assert again.json()["code"] == "alert_state_invalid"
    assert resolved.json()["state"] == "resolved"
    assert resolved.json()["resolved_by"] == "operator-a"
    assert resolved.json()["note"] == "门已修好"
    assert twice.status_code == 409
    with session_scope(seeded) as session:
        entries = list_audit_entries(session, object_type="alert", object_id=forced_alert_id)
    assert [entry.action for entry in entries] == ["alert.acknowledge", "alert.resolve"]
    assert entries[0].after == {"state": "acknowledged", "note": "已派人查看"}
    assert entries[1].before == {"state": "acknowledged"}


@pytest.mark.parametrize(
    ("role", "list_total", "action_status"),
    [
        pytest.param("province_admin", 1, 200, id="province"),
        pytest.param("school_admin_a", 1, 403, id="own-school-admin"),
        pytest.param("school_admin_b", 0, 403, id="other-school-admin"),
        pytest.param("operator_b", 0, 404, id="other-operator"),
    ],
)
def test_alert_scope(
    client: TestClient,
    world: World,
    forced_alert_id: int,
    role: str,
    list_total: int,
    action_status: int,
) -> None:
    headers = world.headers[role]

    listed = client.get("/api/v1/alerts", headers=headers)
    action = client.post(f"/api/v1/alerts/{forced_alert_id}/acknowledge", json={}, headers=headers)

    assert listed.json()["total"] == list_total
    assert action.status_code == action_status


def test_manual_resolve_while_active_waits_before_raising_again(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    kiosk = world.a.kiosk_id

    def link_down(session: Session, when: datetime) -> None:
        beat = telemetry(kiosk, when, serial_link=SerialLinkState.DOWN)
        handle_telemetry(session, beat, received_at=when)

    with session_scope(seeded) as session:
        for second in (0, 30, 60):
            link_down(session, at(second))
        [alert] = alerts(session)
        alert_id = alert.id

    resolved = client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={}, headers=world.headers["province_admin"]
    )

    assert resolved.status_code == 200
    # The condition starts timing anew at the resolve time, which is the wall clock.
    resolved_at = datetime.fromisoformat(resolved.json()["resolved_at"])
    with session_scope(seeded) as session:
        link_down(session, resolved_at + timedelta(seconds=1))
        link_down(session, resolved_at + timedelta(seconds=30))
        assert [a.state for a in alerts(session)] == [AlertState.RESOLVED]
        link_down(session, resolved_at + timedelta(seconds=61))
        assert [a.state for a in alerts(session)] == [AlertState.RESOLVED, AlertState.OPEN]
    listed = client.get(
        "/api/v1/alerts?kind=serial_link_down&state=open", headers=world.headers["operator_a"]
    )
    assert listed.json()["total"] == 1
