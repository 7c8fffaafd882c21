"""Bodies for fleet monitoring: cabinet states, stock, alerts and restock lists."""

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from fleet_server.models import (
    AlertKind,
    AlertState,
    CabinetServiceStatus,
    LocationType,
    OfflineReason,
    StockSource,
)
from fleet_server.schemas.common import RequestModel


class FleetConnection(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    # The server has never heard from the cabinet.
    UNKNOWN = "unknown"


class DoorPublic(BaseModel):
    door: int
    lock: str = Field(description="locked, released or fault")
    position: str = Field(description="closed or open")


class ShelfReadingPublic(BaseModel):
    shelf: int
    weight_mg: int
    stable: bool
    fault: bool


class FleetCabinetPublic(BaseModel):
    """One row of the fleet list: where the cabinet is and how it is doing."""

    kiosk_id: str
    school_id: int
    school_name: str
    placement_id: int
    placement_name: str
    location_type: LocationType
    operator_id: int
    operator_name: str
    service_status: CabinetServiceStatus
    connection: FleetConnection
    connection_since: datetime | None
    offline_reason: OfflineReason | None
    last_seen_at: datetime | None
    doors_closed: bool | None = Field(description="all doors closed; None before telemetry")
    lock_faults: int = Field(description="doors whose lock reports a fault")
    scale_faults: int = Field(description="shelves whose scale reports a fault")
    serial_link_up: bool | None
    backlog_messages: int | None = Field(description="sales and events not yet acknowledged")
    backlog_oldest_at: datetime | None = Field(description="creation time on the cabinet's clock")
    firmware_version: str | None
    agent_version: str | None
    planogram_version: int | None = Field(description="version the cabinet reports in force")
    planogram_latest_version: int | None = Field(description="newest version saved")
    disk_free_bytes: int | None
    open_alerts: int = Field(description="alerts not resolved yet")


class StockLinePublic(BaseModel):
    shelf: int
    product_id: int
    product_name: str
    is_sample: bool
    quantity: int | None = Field(description="packs on the shelf, or None when unknown")
    target: int = Field(description="the product's share of the shelf capacity")
    low: bool
    source: StockSource | None
    updated_at: datetime | None


class MisplacedPublic(BaseModel):
    product_id: str | None
    shelf: int | None
    at: str | None


class AlertPublic(BaseModel):
    id: int
    kiosk_id: str
    kind: AlertKind
    subject: str
    state: AlertState
    title: str
    title_en: str
    raised_at: datetime
    last_seen_at: datetime
    occurrences: int
    detail: dict[str, Any]
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    note: str | None


class CabinetLivePublic(FleetCabinetPublic):
    """A cabinet's full live state, with its stock and the alerts not resolved yet."""

    doors: list[DoorPublic]
    shelves: list[ShelfReadingPublic]
    session_state: str | None
    last_telemetry_at: datetime | None
    last_board_restart_at: datetime | None
    last_command_rejected: dict[str, Any] | None
    stock: list[StockLinePublic]
    misplaced: list[MisplacedPublic]
    alerts: list[AlertPublic]


class AlertAction(RequestModel):
    note: str | None = Field(default=None, max_length=500, description="what was done")


class RestockItemPublic(BaseModel):
    shelf: int
    product_id: int
    product_name: str
    certificate_number: str
    is_sample: bool
    quantity: int | None = Field(description="packs on the shelf now, or None when unknown")
    target: int
    to_bring: int = Field(description="packs to bring to fill the product's share")


class RestockCabinetPublic(BaseModel):
    kiosk_id: str
    school_name: str
    placement_name: str
    operator_name: str
    items: list[RestockItemPublic]
    misplaced: list[MisplacedPublic]


class RestockTotalPublic(BaseModel):
    product_id: int
    product_name: str
    to_bring: int


class RestockListPublic(BaseModel):
    """补货清单: what to bring to which cabinet, and the totals to load."""

    low_stock_fraction: float
    cabinets: list[RestockCabinetPublic]
    totals: list[RestockTotalPublic]
