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
from fleet_server.models.products import Product
from fleet_server.models.registry import (
    Building,
    Cabinet,
    Operator,
    Placement,
    School,
    school_designated_counties,
)
from fleet_server.models.users import User

__all__ = [
    "AuditEntry",
    "Base",
    "Building",
    "Cabinet",
    "CabinetServiceStatus",
    "County",
    "CountyCode",
    "CountyLevel",
    "LocationType",
    "Operator",
    "Placement",
    "Product",
    "Role",
    "School",
    "SchoolType",
    "User",
    "school_designated_counties",
]
