"""Helpers for the provisioning, planogram, monitoring and alert tests.

Products with chosen pack weights, cabinet keys, planograms saved by the system, and
builders for the MQTT payloads that cabinets send.
"""

import secrets
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.models import Cabinet, County, Product
from fleet_server.schemas.planograms import PlanogramLineIn, PlanogramShelfIn, PlanogramUpdate
from fleet_server.services.access import Actor
from fleet_server.services.planograms import save_planogram
from kiosk_agent.contract import (
    DoorPosition,
    DoorTelemetry,
    EventType,
    KioskEvent,
    KioskState,
    KioskStatus,
    LockState,
    OutboxBacklog,
    SerialLinkState,
    ShelfTelemetry,
    StockLine,
    Telemetry,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SYSTEM = Actor.system("test")
AGENT_VERSION = "0.1.0"
GIB = 1024**3


def at(seconds: float) -> datetime:
    """Return the time ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def add_product(
    session: Session,
    name: str,
    *,
    weight_g: int,
    tolerance_g: int,
    price_fen: int = 1000,
    is_sample: bool = False,
    valid_until: date = date(2030, 12, 31),
) -> Product:
    county_id = session.scalar(select(County.id).order_by(County.id).limit(1))
    assert county_id is not None, "seed the counties first"
    product = Product(
        certificate_number=f"TEST-{uuid.uuid4().hex[:12]}",
        name=name,
        source_county_id=county_id,
        category="测试",
        unit_weight_g=weight_g,
        weight_tolerance_g=tolerance_g,
        price_fen=price_fen,
        valid_from=date(2020, 1, 1),
        valid_until=valid_until,
        is_sample=is_sample,
    )
    session.add(product)
    session.flush()
    return product


def cabinet(session: Session, kiosk_id: str) -> Cabinet:
    found = session.scalar(select(Cabinet).where(Cabinet.kiosk_id == kiosk_id))
    assert found is not None, kiosk_id
    return found


def give_key(session: Session, kiosk_id: str) -> bytes:
    """Give a cabinet an HMAC key, as provisioning would, and return it."""
    key = secrets.token_hex(32)
    cabinet(session, kiosk_id).hmac_key = key
    session.flush()
    return bytes.fromhex(key)


def layout(*shelves: tuple[int, int, list[int]]) -> PlanogramUpdate:
    """Build a planogram body from (shelf, capacity, [product ids]) tuples."""
    return PlanogramUpdate(
        shelves=[
            PlanogramShelfIn(
                shelf=shelf,
                capacity_items=capacity,
                products=[PlanogramLineIn(product_id=product_id) for product_id in product_ids],
            )
            for shelf, capacity, product_ids in shelves
        ]
    )


def save_layout(session: Session, kiosk_id: str, *shelves: tuple[int, int, list[int]]) -> int:
    """Save a planogram as the system and return its version."""
    result = save_planogram(session, actor=SYSTEM, kiosk_id=kiosk_id, data=layout(*shelves))
    return result.planogram.version


def status(kiosk_id: str, state: KioskState, since: datetime | None) -> KioskStatus:
    return KioskStatus(kiosk_id=kiosk_id, state=state, since=since, agent_version=AGENT_VERSION)


def telemetry(kiosk_id: str, sent_at: datetime, **changes: Any) -> Telemetry:
    """Return a healthy heartbeat: door closed and locked, two stable shelves, empty outbox."""
    fields: dict[str, Any] = {
        "kiosk_id": kiosk_id,
        "sent_at": sent_at,
        "doors": [DoorTelemetry(door=0, lock=LockState.LOCKED, position=DoorPosition.CLOSED)],
        "shelves": [
            ShelfTelemetry(shelf=0, weight_mg=0, stable=True, fault=False),
            ShelfTelemetry(shelf=1, weight_mg=0, stable=True, fault=False),
        ],
        "backlog": OutboxBacklog(sales=0, events=0, oldest_created_at=None),
        "firmware_version": "1.4.2",
        "agent_version": AGENT_VERSION,
        "serial_link": SerialLinkState.UP,
        "session_state": "idle",
        "planogram_version": None,
        "disk_free_bytes": 8 * GIB,
    }
    fields.update(changes)
    return Telemetry(**fields)


def event(
    kiosk_id: str,
    event_type: EventType,
    event_at: datetime,
    detail: dict[str, Any] | None = None,
    stock: list[StockLine] | None = None,
) -> KioskEvent:
    return KioskEvent(
        event_id=uuid.uuid4(),
        kiosk_id=kiosk_id,
        type=event_type,
        at=event_at,
        detail=detail or {},
        stock=stock,
    )
