"""SQLAlchemy models of the fleet server. Importing this package registers every table."""

from fleet_server.models.audit import AuditEntry
from fleet_server.models.base import Base
from fleet_server.models.counties import County, CountyCode
from fleet_server.models.enums import (
    CabinetServiceStatus,
    CountyLevel,
    LocationType,
    Role,
    SchoolType,
)
from fleet_server.models.ingest import DeadLetter, KioskEventRecord
from fleet_server.models.operations import (
    Alert,
    AlertCondition,
    AlertKind,
    AlertState,
    CabinetState,
    CabinetStock,
    ConnectionState,
    OfflineReason,
    Planogram,
    PlanogramLine,
    PlanogramShelf,
    StockSource,
)
from fleet_server.models.planning import PlacementPlan, PlanStatus
from fleet_server.models.procurement import (
    EntrySource,
    NotCountingReason,
    ProcurementChannel,
    ProcurementDailyTotal,
    ProcurementEntry,
    ProcurementReport,
    ReportStatus,
    VoucherFile,
)
from fleet_server.models.products import Product
from fleet_server.models.purchases import ACTIVE_STATES, PurchaseSession, PurchaseState
from fleet_server.models.registry import (
    Building,
    Cabinet,
    Operator,
    Placement,
    School,
    school_designated_counties,
)
from fleet_server.models.sales import Sale, SaleLine, SaleRefund, ServerReviewReason
from fleet_server.models.users import User
from fleet_server.models.wallets import (
    HoldStatus,
    PaymentHold,
    TransactionKind,
    Wallet,
    WalletTransaction,
)

__all__ = [
    "ACTIVE_STATES",
    "Alert",
    "AlertCondition",
    "AlertKind",
    "AlertState",
    "AuditEntry",
    "Base",
    "Building",
    "Cabinet",
    "CabinetServiceStatus",
    "CabinetState",
    "CabinetStock",
    "ConnectionState",
    "County",
    "CountyCode",
    "CountyLevel",
    "DeadLetter",
    "EntrySource",
    "HoldStatus",
    "KioskEventRecord",
    "LocationType",
    "NotCountingReason",
    "OfflineReason",
    "Operator",
    "PaymentHold",
    "Placement",
    "PlacementPlan",
    "PlanStatus",
    "Planogram",
    "PlanogramLine",
    "PlanogramShelf",
    "ProcurementChannel",
    "ProcurementDailyTotal",
    "ProcurementEntry",
    "ProcurementReport",
    "Product",
    "PurchaseSession",
    "PurchaseState",
    "ReportStatus",
    "Role",
    "Sale",
    "SaleLine",
    "SaleRefund",
    "School",
    "SchoolType",
    "ServerReviewReason",
    "StockSource",
    "TransactionKind",
    "User",
    "VoucherFile",
    "Wallet",
    "WalletTransaction",
    "school_designated_counties",
]
