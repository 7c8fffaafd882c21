"""Bodies for operators (运营企业) and their cabinets."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from fleet_server.models import Cabinet, CabinetServiceStatus
from fleet_server.schemas.common import NameStr, RequestModel, UpdateModel
from kiosk_agent.contract import RegisteredKioskId

# 统一社会信用代码: 18 characters of digits and upper-case letters (GB 32100-2015).
CreditCode = Annotated[str, Field(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")]
# The agent's config accepts the same ids, so every registered cabinet can be configured.
KioskId = RegisteredKioskId
FirmwareVersion = Annotated[str, Field(min_length=1, max_length=64, examples=["1.4.2"])]


class OperatorCreate(RequestModel):
    name: NameStr
    name_en: NameStr | None = None
    credit_code: CreditCode | None = None


class OperatorUpdate(UpdateModel):
    NOT_NULLABLE = frozenset({"name"})

    name: NameStr | None = None
    name_en: NameStr | None = None
    credit_code: CreditCode | None = None


class OperatorPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    name_en: str | None
    credit_code: str | None
    created_at: datetime


class CabinetCreate(RequestModel):
    kiosk_id: KioskId
    placement_id: int
    operator_id: int | None = Field(
        default=None,
        description="operating company, which operator accounts may omit to get their own",
    )
    firmware_version: FirmwareVersion | None = None


class CabinetPublic(BaseModel):
    id: int
    kiosk_id: str
    placement_id: int
    school_id: int
    operator_id: int
    firmware_version: str | None
    service_status: CabinetServiceStatus
    online: bool
    last_seen_at: datetime | None
    created_at: datetime

    @classmethod
    def from_model(cls, cabinet: Cabinet) -> "CabinetPublic":
        return cls(
            id=cabinet.id,
            kiosk_id=cabinet.kiosk_id,
            placement_id=cabinet.placement_id,
            school_id=cabinet.placement.building.school_id,
            operator_id=cabinet.operator_id,
            firmware_version=cabinet.firmware_version,
            service_status=cabinet.service_status,
            online=cabinet.online,
            last_seen_at=cabinet.last_seen_at,
            created_at=cabinet.created_at,
        )
