"""Errors that services raise. The API turns each into a JSON body and an HTTP status.

Exception tree::

    ServiceError                 code, Chinese message, English message
    ├── NotFoundError            the object does not exist or is outside the caller's scope
    ├── ConflictError            a unique value (name, kiosk id, certificate number) is taken
    ├── PermissionDeniedError    the caller's role may not perform the action
    └── InvalidInputError        the request is well-formed but refers to something invalid

Every message is written for the person using the web pages: Simplified Chinese first,
with the English text alongside.
"""

from typing import Any

# Names of the objects in messages: (Chinese, English).
OBJECT_NAMES: dict[str, tuple[str, str]] = {
    "school": ("学校", "School"),
    "building": ("建筑", "Building"),
    "placement": ("点位", "Placement"),
    "operator": ("运营企业", "Operator"),
    "cabinet": ("智能专柜", "Cabinet"),
    "county": ("贫困县", "Poverty county"),
    "product": ("扶贫产品", "Certified product"),
    "user": ("用户", "User"),
    "procurement_entry": ("台账记录", "Ledger entry"),
    "voucher_file": ("凭证文件", "Voucher file"),
    "report": ("采购信息表", "Procurement report"),
    "placement_plan": ("点位规划", "Placement plan"),
}


class ServiceError(Exception):
    """Base of the errors a service raises on purpose. ``code`` is stable for clients."""

    def __init__(
        self, code: str, message: str, message_en: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message_en)
        self.code = code
        self.message = message
        self.message_en = message_en
        self.details = details


class NotFoundError(ServiceError):
    """The object does not exist, or the caller may not see it. Both cases give this error."""

    def __init__(self, object_type: str, key: object) -> None:
        name_zh, name_en = OBJECT_NAMES[object_type]
        super().__init__(
            code=f"{object_type}_not_found",
            message=f"{name_zh}不存在：{key}",
            message_en=f"{name_en} not found: {key}",
        )


class ConflictError(ServiceError):
    def __init__(self, object_type: str, field: str, value: object) -> None:
        name_zh, name_en = OBJECT_NAMES[object_type]
        super().__init__(
            code=f"{object_type}_exists",
            message=f"{name_zh}已存在：{field} = {value}",
            message_en=f"{name_en} already exists with {field} = {value}",
        )


class PermissionDeniedError(ServiceError):
    def __init__(self, message: str, message_en: str) -> None:
        super().__init__(code="permission_denied", message=message, message_en=message_en)


class InvalidInputError(ServiceError):
    pass
