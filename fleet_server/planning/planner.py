"""Recommend how many cabinets a school needs and split them over its buildings.

1. Total: enrollment divided by the students each cabinet serves, rounded up,
   and never below the sum of the minimums in step 2. No public figure exists
   for students per cabinet, so it is a setting.
2. Split over location types (dormitory, canteen, ...) present at the school,
   in proportion to each type's weight, by the largest remainder method. A
   type's minimum is the per-building minimum times its number of buildings
   (for example one cabinet in every canteen); a type whose share falls below
   its minimum gets the minimum, and the rest is shared again among the others.
3. Split each type's count over its buildings in proportion to their size
   (beds, seats, residents), the same way, with the per-building minimum.

Every number carries an explanation in Chinese and English.
"""

import enum
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


class LocationType(enum.StrEnum):
    DORMITORY = "dormitory"
    CANTEEN = "canteen"
    LIBRARY = "library"
    SPORTS_VENUE = "sports_venue"
    STAFF_LIVING = "staff_living"
    OTHER = "other"


LOCATION_NAMES = {
    LocationType.DORMITORY: ("学生公寓", "dormitory", "床位", "beds"),
    LocationType.CANTEEN: ("学生食堂", "canteen", "座位", "seats"),
    LocationType.LIBRARY: ("图书馆", "library", "座位", "seats"),
    LocationType.SPORTS_VENUE: ("体育场馆", "sports venue", "容量", "capacity"),
    LocationType.STAFF_LIVING: ("教职工生活区", "staff living area", "住户", "households"),
    LocationType.OTHER: ("其他", "other", "规模", "size"),
}


@dataclass(frozen=True)
class PlannerConfig:
    """The planner's assumptions; each school or the province may change them."""

    students_per_cabinet: int = 800
    # Relative weights of the location types present at a school.
    type_weights: Mapping[LocationType, int] = field(
        default_factory=lambda: {
            LocationType.DORMITORY: 60,
            LocationType.CANTEEN: 20,
            LocationType.LIBRARY: 8,
            LocationType.SPORTS_VENUE: 6,
            LocationType.STAFF_LIVING: 6,
            LocationType.OTHER: 0,
        }
    )
    # Minimum number of cabinets in every building of a type.
    min_per_building: Mapping[LocationType, int] = field(
        default_factory=lambda: {LocationType.CANTEEN: 1}
    )

    def __post_init__(self) -> None:
        if self.students_per_cabinet <= 0:
            raise ValueError("students_per_cabinet must be positive")
        if any(weight < 0 for weight in self.type_weights.values()):
            raise ValueError("type weights must not be negative")
        if any(minimum < 0 for minimum in self.min_per_building.values()):
            raise ValueError("minimums must not be negative")


@dataclass(frozen=True)
class Building:
    building_id: str
    name: str
    location_type: LocationType
    size: int


@dataclass(frozen=True)
class Explanation:
    zh: str
    en: str


@dataclass(frozen=True)
class Allocation:
    count: int
    explanation: Explanation


@dataclass(frozen=True)
class Plan:
    total: Allocation
    by_type: Mapping[LocationType, Allocation]
    by_building: Mapping[str, Allocation]


def apportion(
    total: int, weights: Mapping[K, int], minimums: Mapping[K, int]
) -> tuple[dict[K, int], dict[K, Fraction], set[K]]:
    """Share ``total`` in proportion to ``weights`` by the largest remainder method.

    Keys whose proportional share falls below their minimum get the minimum,
    and the rest is shared again among the others. Ties in the remainders go
    to the larger weight, then to the earlier key. Returns the counts, the
    exact quotas of the shared keys, and the keys held at their minimum.
    Raises ``ValueError`` if the minimums exceed ``total``.
    """
    keys = list(weights)
    if sum(minimums.get(key, 0) for key in keys) > total:
        raise ValueError(f"minimums add up to more than {total}")

    held: set[K] = set()
    while True:
        shared = [key for key in keys if key not in held]
        remaining = total - sum(minimums.get(key, 0) for key in held)
        weight_sum = sum(weights[key] for key in shared)
        if weight_sum == 0:
            quotas = {key: Fraction(0) for key in shared}
            if remaining and shared:
                # No weight to go by: share equally.
                quotas = {key: Fraction(remaining, len(shared)) for key in shared}
        else:
            quotas = {key: Fraction(remaining * weights[key], weight_sum) for key in shared}
        below = {key for key in shared if quotas[key] < minimums.get(key, 0)}
        if not below:
            break
        held |= below

    counts = {key: minimums.get(key, 0) for key in held}
    floors = {key: math.floor(quotas[key]) for key in shared}
    counts.update(floors)
    leftover = remaining - sum(floors.values())
    order = sorted(
        shared,
        key=lambda key: (-(quotas[key] - floors[key]), -weights[key], keys.index(key)),
    )
    for key in order[:leftover]:
        counts[key] += 1
    return counts, quotas, held


def _type_names(location_type: LocationType) -> tuple[str, str, str, str]:
    return LOCATION_NAMES[location_type]


def recommend(
    *, enrollment: int, buildings: Sequence[Building], config: PlannerConfig | None = None
) -> Plan:
    """Return the recommended plan for a school; see the module docstring."""
    config = config or PlannerConfig()
    if enrollment < 0:
        raise ValueError("enrollment must not be negative")
    if any(building.size < 0 for building in buildings):
        raise ValueError("building sizes must not be negative")

    by_type: dict[LocationType, list[Building]] = {}
    for building in buildings:
        by_type.setdefault(building.location_type, []).append(building)

    type_minimums = {
        location_type: config.min_per_building.get(location_type, 0) * len(members)
        for location_type, members in by_type.items()
    }
    from_enrollment = math.ceil(enrollment / config.students_per_cabinet)
    total = max(from_enrollment, sum(type_minimums.values()))
    total_explanation = Explanation(
        f"在校生 {enrollment} 人 ÷ 每台服务 {config.students_per_cabinet} 人，"
        f"向上取整为 {from_enrollment} 台"
        + (f"；低于各点位最低数量之和，取 {total} 台" if total > from_enrollment else ""),
        f"{enrollment} students / {config.students_per_cabinet} per cabinet, "
        f"rounded up: {from_enrollment}"
        + (f"; raised to the sum of the minimums, {total}" if total > from_enrollment else ""),
    )

    weights = {t: config.type_weights.get(t, 0) for t in by_type}
    type_counts, type_quotas, type_held = apportion(total, weights, type_minimums)
    weight_sum = sum(weights[t] for t in by_type if t not in type_held)

    type_allocations: dict[LocationType, Allocation] = {}
    building_allocations: dict[str, Allocation] = {}
    for location_type, members in by_type.items():
        zh_name, en_name, zh_unit, en_unit = _type_names(location_type)
        count = type_counts[location_type]
        if location_type in type_held:
            minimum = config.min_per_building.get(location_type, 0)
            explanation = Explanation(
                f"{zh_name}共 {len(members)} 处，每处不少于 {minimum} 台：{count} 台",
                f"{len(members)} {en_name} buildings, at least {minimum} each: {count}",
            )
        else:
            quota = float(type_quotas[location_type])
            explanation = Explanation(
                f"{zh_name}权重 {weights[location_type]}/{weight_sum}，"
                f"应得 {quota:.2f} 台，最大余数法取 {count} 台",
                f"{en_name} weight {weights[location_type]}/{weight_sum}, "
                f"quota {quota:.2f}, largest remainder gives {count}",
            )
        type_allocations[location_type] = Allocation(count, explanation)

        sizes = {b.building_id: b.size for b in members}
        per_building = config.min_per_building.get(location_type, 0)
        counts, quotas, held = apportion(
            count, sizes, {b.building_id: per_building for b in members}
        )
        size_sum = sum(sizes.values())
        for building in members:
            share = counts[building.building_id]
            if building.building_id in held:
                text = Explanation(
                    f"{building.name}：每处{zh_name}不少于 {per_building} 台，取 {share} 台",
                    f"{building.name}: at least {per_building} per {en_name}, {share}",
                )
            else:
                quota = float(quotas[building.building_id])
                text = Explanation(
                    f"{building.name}：{zh_unit} {building.size}/{size_sum}，"
                    f"应得 {quota:.2f} 台，取 {share} 台",
                    f"{building.name}: {en_unit} {building.size}/{size_sum}, "
                    f"quota {quota:.2f}, {share}",
                )
            building_allocations[building.building_id] = Allocation(share, text)

    return Plan(Allocation(total, total_explanation), type_allocations, building_allocations)


@dataclass(frozen=True)
class PlacementGap:
    """Planned against installed and online cabinets at one building."""

    building_id: str
    planned: int
    installed: int
    online: int

    @property
    def to_install(self) -> int:
        return max(self.planned - self.installed, 0)

    @property
    def offline(self) -> int:
        return self.installed - self.online


def compare(
    plan: Plan, installed: Mapping[str, int], online: Mapping[str, int]
) -> list[PlacementGap]:
    """Return one row per building of the plan or with cabinets installed."""
    building_ids = list(plan.by_building) + [b for b in installed if b not in plan.by_building]
    return [
        PlacementGap(
            building_id,
            plan.by_building[building_id].count if building_id in plan.by_building else 0,
            installed.get(building_id, 0),
            online.get(building_id, 0),
        )
        for building_id in building_ids
    ]
