"""Batch statements of fleet_server.services.sql on SQLite and PostgreSQL."""

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.db import session_scope
from fleet_server.models import (
    Building,
    Cabinet,
    DeadLetter,
    KioskEventRecord,
    LocationType,
    Operator,
    Placement,
    School,
)
from fleet_server.services.sql import bulk_insert, matches_any

pytest_plugins = ["server_fixtures"]

RECEIVED = datetime(2026, 12, 4, 23, 59, 59, 123456, tzinfo=UTC)


def add_cabinet(session: Session, kiosk_id: str) -> int:
    school_id = session.scalar(sa.select(School.id).order_by(School.id).limit(1))
    building = Building(school_id=school_id, name="测试楼", location_type=LocationType.DORMITORY)
    placement = Placement(building=building, description="一楼大厅")
    operator = Operator(name="测试运营企业")
    session.add_all([building, placement, operator])
    session.flush()
    cabinet = Cabinet(kiosk_id=kiosk_id, placement_id=placement.id, operator_id=operator.id)
    session.add(cabinet)
    session.flush()
    return cabinet.id


def event_row(cabinet_id: int, event_id: uuid.UUID, detail: dict[str, object]) -> dict[str, object]:
    return {
        "kiosk_id": "AH-10357-0001",
        "event_id": event_id,
        "cabinet_id": cabinet_id,
        "type": "restock",
        # Another zone: the stored instant must be the same.
        "at": RECEIVED.astimezone(timezone(timedelta(hours=8))),
        "session_id": None,
        "detail": detail,
        "stock": [{"shelf": 0, "product_id": "12", "quantity": 3}],
        "received_at": RECEIVED,
    }


def test_bulk_insert_round_trips_every_type(seeded: sessionmaker[Session]) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    detail = {"note": '引号 " 反斜杠 \\ 与换行\n', "count": 2**40, "nested": [True, None]}
    with session_scope(seeded) as session:
        cabinet_id = add_cabinet(session, "AH-10357-0001")
        new = bulk_insert(
            session,
            KioskEventRecord,
            [event_row(cabinet_id, first, detail), event_row(cabinet_id, second, {})],
            conflict_columns=["kiosk_id", "event_id"],
            returning=["event_id"],
        )
        assert sorted(event_id for (event_id,) in new) == sorted([first, second])

    with session_scope(seeded) as session:
        stored = session.scalar(
            sa.select(KioskEventRecord).where(KioskEventRecord.event_id == first)
        )
        assert stored is not None
        assert stored.detail == detail
        assert stored.stock == [{"shelf": 0, "product_id": "12", "quantity": 3}]
        assert stored.at == RECEIVED
        assert stored.received_at == RECEIVED
        assert stored.session_id is None


def test_bulk_insert_skips_conflicts(
    seeded: sessionmaker[Session],
) -> None:
    known, fresh = uuid.uuid4(), uuid.uuid4()
    with session_scope(seeded) as session:
        cabinet_id = add_cabinet(session, "AH-10357-0001")
        bulk_insert(
            session,
            KioskEventRecord,
            [event_row(cabinet_id, known, {"first": True})],
            conflict_columns=["kiosk_id", "event_id"],
        )
        new = bulk_insert(
            session,
            KioskEventRecord,
            # The known event again, and the fresh one twice in the same statement.
            [event_row(cabinet_id, event_id, {}) for event_id in (known, fresh, fresh)],
            conflict_columns=["kiosk_id", "event_id"],
            returning=["event_id"],
        )

        assert new == [(fresh,)]
        rows = session.execute(sa.select(KioskEventRecord.event_id, KioskEventRecord.detail))
        details = {row.event_id: row.detail for row in rows}
        assert details == {known: {"first": True}, fresh: {}}


def test_bulk_insert_rejects_a_naive_datetime(seeded: sessionmaker[Session]) -> None:
    row = {
        "topic": "zhigui/v1/kiosks/AH-10357-0001/sales",
        "kiosk_id": None,
        "reason": "test",
        "payload_excerpt": "{}",
        "payload_bytes": 2,
        "received_at": datetime(2026, 12, 4, 12, 0, 0),
    }
    with session_scope(seeded) as session, pytest.raises((ValueError, SQLAlchemyError)) as error:
        bulk_insert(session, DeadLetter, [row])
    assert "naive datetime" in str(error.value)


@pytest.mark.parametrize("count", [0, 1, 600])
def test_matches_any_finds_listed_rows(seeded: sessionmaker[Session], count: int) -> None:
    with session_scope(seeded) as session:
        cabinet_id = add_cabinet(session, "AH-10357-0001")
        ids = [uuid.uuid4() for _ in range(count + 5)]
        bulk_insert(session, KioskEventRecord, [event_row(cabinet_id, i, {}) for i in ids])
        requested = [*ids[:count], uuid.uuid4()]

        found = session.scalars(
            sa.select(KioskEventRecord.event_id).where(
                matches_any(session, KioskEventRecord.event_id, requested)
            )
        ).all()

        assert sorted(found) == sorted(ids[:count])
