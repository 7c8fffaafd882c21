"""Enumerations stored in the database as short strings (VARCHAR plus a CHECK constraint)."""

import enum
from typing import Any

from sqlalchemy import Enum


class SchoolType(enum.StrEnum):
    UNDERGRADUATE = "undergraduate"  # 本科
    VOCATIONAL = "vocational"  # 高职 (including 高等专科学校)


class LocationType(enum.StrEnum):
    DORMITORY = "dormitory"  # 学生公寓
    CANTEEN = "canteen"  # 学生食堂
    LIBRARY = "library"  # 图书馆
    SPORTS_VENUE = "sports_venue"  # 体育场馆
    STAFF_LIVING = "staff_living"  # 教职工生活区
    OTHER = "other"  # 其他


class CountyLevel(enum.StrEnum):
    NATIONAL = "national"  # 国家级贫困县
    PROVINCIAL = "provincial"  # 省级贫困县


class CabinetServiceStatus(enum.StrEnum):
    PROVISIONED = "provisioned"  # registered, not yet selling
    IN_SERVICE = "in_service"
    OUT_OF_SERVICE = "out_of_service"  # 暂停服务
    RETIRED = "retired"


class Role(enum.StrEnum):
    STUDENT = "student"
    OPERATOR = "operator"
    SCHOOL_ADMIN = "school_admin"
    PROVINCE_ADMIN = "province_admin"


def enum_type(enum_class: type[enum.StrEnum], name: str) -> Enum:
    """Return a portable column type that stores the enum's values, checked by a constraint."""

    def values(members: Any) -> list[str]:
        return [member.value for member in members]

    return Enum(
        enum_class,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=values,
        validate_strings=True,
    )
