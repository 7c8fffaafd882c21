"""Placement planning: apportionment, minimums, explanations and configuration."""

from hypothesis import given
from hypothesis import strategies as st

from fleet_server.planning.planner import (
    Building,
    LocationType,
    PlannerConfig,
    apportion,
    compare,
    recommend,
)

L = LocationType


def _school() -> list[Building]:
    dormitories = [
        Building(f"d{i}", f"{i + 1}号公寓", L.DORMITORY, 800 + 40 * i) for i in range(12)
    ]
    canteens = [Building(f"c{i}", f"第{i + 1}食堂", L.CANTEEN, 600) for i in range(3)]
    library = [Building("lib", "图书馆", L.LIBRARY, 2_000)]
    return dormitories + canteens + library


def test_twenty_thousand_students_plan() -> None:
    buildings = _school()

    plan = recommend(enrollment=20_000, buildings=buildings)

    assert plan.total.count == 25
    assert sum(a.count for a in plan.by_type.values()) == plan.total.count
    assert sum(a.count for a in plan.by_building.values()) == plan.total.count
    for building in buildings:
        if building.location_type is L.CANTEEN:
            assert plan.by_building[building.building_id].count >= 1
    assert set(plan.by_type) == {L.DORMITORY, L.CANTEEN, L.LIBRARY}


def test_every_number_is_explained_in_both_languages() -> None:
    plan = recommend(enrollment=20_000, buildings=_school())

    allocations = [plan.total, *plan.by_type.values(), *plan.by_building.values()]

    assert all(a.explanation.zh and a.explanation.en for a in allocations)
    assert "20000" in plan.total.explanation.zh
    assert "800" in plan.total.explanation.en


def test_plan_changes_with_students_per_cabinet() -> None:
    default = recommend(enrollment=20_000, buildings=_school())
    denser = recommend(
        enrollment=20_000, buildings=_school(), config=PlannerConfig(students_per_cabinet=500)
    )

    assert default.total.count == 25
    assert denser.total.count == 40
    assert sum(a.count for a in denser.by_building.values()) == 40


def test_plan_changes_with_weights() -> None:
    weights = {L.DORMITORY: 30, L.CANTEEN: 60, L.LIBRARY: 10}

    plan = recommend(
        enrollment=20_000, buildings=_school(), config=PlannerConfig(type_weights=weights)
    )

    assert plan.by_type[L.CANTEEN].count > plan.by_type[L.DORMITORY].count
    assert sum(a.count for a in plan.by_type.values()) == 25


def test_minimums_raise_a_small_school() -> None:
    config = PlannerConfig(min_per_building={L.CANTEEN: 1, L.LIBRARY: 2})

    plan = recommend(enrollment=500, buildings=_school(), config=config)

    assert plan.total.count == 5
    assert plan.by_type[L.CANTEEN].count == 3
    assert plan.by_type[L.LIBRARY].count == 2
    assert plan.by_type[L.DORMITORY].count == 0
    assert "最低" in plan.total.explanation.zh


def test_larger_dormitories_get_no_fewer_cabinets() -> None:
    plan = recommend(enrollment=20_000, buildings=_school())

    counts = [plan.by_building[f"d{i}"].count for i in range(12)]

    assert counts == sorted(counts)


def test_compare_reports_gaps() -> None:
    plan = recommend(enrollment=20_000, buildings=_school())

    rows = {row.building_id: row for row in compare(plan, {"c0": 2, "x": 1}, {"c0": 1})}

    assert rows["c0"].installed == 2
    assert rows["c0"].offline == 1
    assert rows["x"].planned == 0
    assert rows["d0"].to_install == plan.by_building["d0"].count


@given(
    st.integers(0, 500),
    st.dictionaries(st.integers(0, 9), st.integers(0, 100), min_size=1, max_size=8),
    st.data(),
)
def test_apportion_sums_and_meets_minimums(total: int, weights: dict, data: st.DataObject) -> None:
    minimums = {key: data.draw(st.integers(0, 3)) for key in weights}
    if sum(minimums.values()) > total:
        return

    counts, _, _ = apportion(total, weights, minimums)

    assert sum(counts.values()) == total
    assert all(counts[key] >= minimums[key] for key in weights)


def test_apportion_largest_remainder_example() -> None:
    counts, _, held = apportion(10, {"a": 45, "b": 35, "c": 20}, {})

    # Quotas 4.5, 3.5 and 2.0: the two halves tie and the larger weight wins.
    assert counts == {"a": 5, "b": 3, "c": 2}
    assert held == set()
