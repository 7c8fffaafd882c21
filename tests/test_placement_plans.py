"""Placement planning through the API: recommendation, submission, the province's view."""

import io
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.core.db import session_scope
from fleet_server.models import Building, LocationType, School
from fleet_server.services.audit import list_audit_entries
from server_helpers import World

pytest_plugins = ["server_fixtures"]

API = "/api/v1"


@pytest.fixture
def campus(world: World, seeded: sessionmaker[Session]) -> int:
    """School A with 20,000 students, 12 dormitories, 3 canteens and 1 library.

    The fixture's own dormitory (1,200 beds) is one of the 12.
    """
    with session_scope(seeded) as session:
        school = session.get(School, world.a.school_id)
        assert school is not None
        school.enrollment = 20_000
        for number in range(2, 13):
            session.add(
                Building(
                    school_id=school.id,
                    name=f"学生公寓 {number} 号楼",
                    location_type=LocationType.DORMITORY,
                    capacity=800 + 100 * number,
                )
            )
        for number, seats in enumerate((1_500, 900, 600), start=1):
            session.add(
                Building(
                    school_id=school.id,
                    name=f"第{number}食堂",
                    location_type=LocationType.CANTEEN,
                    capacity=seats,
                )
            )
        session.add(
            Building(
                school_id=school.id,
                name="图书馆",
                location_type=LocationType.LIBRARY,
                capacity=3_000,
            )
        )
    return world.a.school_id


def recommend(client: TestClient, world: World, school_id: int, **settings: Any) -> Any:
    response = client.post(
        f"{API}/schools/{school_id}/placement-plan/recommendation",
        json=settings,
        headers=world.headers["school_admin_a"],
    )
    assert response.status_code == 200, response.json()
    return response.json()


def counts_by_type(plan: Any) -> dict[str, int]:
    return {row["location_type"]: row["count"] for row in plan["by_type"]}


def test_recommendation_adds_up_and_meets_minimums(
    client: TestClient, world: World, campus: int
) -> None:
    plan = recommend(client, world, campus)

    assert plan["total"] == 25  # 20,000 students / 800 per cabinet
    assert sum(counts_by_type(plan).values()) == 25
    assert sum(row["count"] for row in plan["by_building"]) == 25
    canteens = [row for row in plan["by_building"] if row["location_type"] == "canteen"]
    assert len(canteens) == 3
    assert all(row["count"] >= 1 for row in canteens)
    assert len(plan["by_building"]) == 16
    assert "20000" in plan["total_explanation"]
    assert all(row["explanation"] and row["explanation_en"] for row in plan["by_building"])
    # The fixture's cabinet stands in the first dormitory and is counted as installed.
    first = next(row for row in plan["by_building"] if row["building_id"] == world.a.building_id)
    assert (first["installed"], first["online"]) == (1, 0)
    assert first["to_install"] == first["count"] - 1
    assert plan["installed"] == 1


def test_recommendation_follows_the_settings(client: TestClient, world: World, campus: int) -> None:
    default = recommend(client, world, campus)
    denser = recommend(client, world, campus, students_per_cabinet=500)
    two_per_canteen = recommend(client, world, campus, min_per_building={"canteen": 2})
    library_heavy = recommend(client, world, campus, type_weights={"library": 40})

    assert denser["total"] == 40
    assert sum(row["count"] for row in denser["by_building"]) == 40
    canteens = [row for row in two_per_canteen["by_building"] if row["location_type"] == "canteen"]
    assert all(row["count"] >= 2 for row in canteens)
    assert counts_by_type(library_heavy)["library"] > counts_by_type(default)["library"]
    assert library_heavy["total"] == default["total"]


def test_plan_submission_and_province_view(
    client: TestClient, world: World, campus: int, seeded: sessionmaker[Session]
) -> None:
    submitted = client.post(
        f"{API}/schools/{campus}/placement-plan",
        json={"students_per_cabinet": 1_000, "note": "首期"},
        headers=world.headers["school_admin_a"],
    )
    by_province = client.post(
        f"{API}/schools/{campus}/placement-plan", json={}, headers=world.headers["province_admin"]
    )
    other = client.post(
        f"{API}/schools/{campus}/placement-plan", json={}, headers=world.headers["school_admin_b"]
    )
    current = client.get(
        f"{API}/schools/{campus}/placement-plan", headers=world.headers["school_admin_a"]
    )
    missing = client.get(
        f"{API}/schools/{world.b.school_id}/placement-plan", headers=world.headers["school_admin_b"]
    )
    overview = client.get(f"{API}/placement-plans", headers=world.headers["province_admin"])
    forbidden = client.get(f"{API}/placement-plans", headers=world.headers["school_admin_a"])
    workbook = client.get(f"{API}/placement-plans/export", headers=world.headers["province_admin"])

    assert submitted.status_code == 201, submitted.json()
    assert submitted.json()["total"] == 20
    assert by_province.status_code == 403
    assert other.status_code == 404
    assert current.json()["id"] == submitted.json()["id"]
    assert missing.status_code == 404
    body = overview.json()
    assert body["target"] == 30_000
    assert body["planned"] == 20
    assert body["schools_with_plan"] == 1
    assert body["installed"] == 2  # one cabinet at each of the two fixture schools
    mine = next(row for row in body["schools"] if row["school_id"] == campus)
    assert (mine["planned"], mine["installed"]) == (20, 1)
    assert forbidden.status_code == 403
    sheet = load_workbook(io.BytesIO(workbook.content)).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[1][:5] == ("序号", "学校名称", "学校类别", "在校生", "规划台数")
    assert rows[-1][4] == 20
    with seeded() as session:
        audit = list_audit_entries(
            session, object_type="placement_plan", object_id=submitted.json()["id"]
        )
        assert [entry.action for entry in audit] == ["plan.submit"]


def test_recommendation_export_matches(client: TestClient, world: World, campus: int) -> None:
    plan = recommend(client, world, campus)
    response = client.post(
        f"{API}/schools/{campus}/placement-plan/recommendation/export",
        json={},
        headers=world.headers["school_admin_a"],
    )

    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    header = rows.index(
        ("序号", "建筑", "点位类型", "规划台数", "已安装", "在线", "待安装", "说明")
    )
    buildings = rows[header + 1 : header + 1 + len(plan["by_building"])]
    assert [(row[1], row[3]) for row in buildings] == [
        (row["building_name"], row["count"]) for row in plan["by_building"]
    ]
    assert rows[header + 1 + len(plan["by_building"])][3] == plan["total"]


@pytest.mark.parametrize(
    ("planner_settings", "field"),
    [
        ({"students_per_cabinet": 0}, "body.students_per_cabinet"),
        ({"students_per_cabinet": "800"}, "body.students_per_cabinet"),
        ({"type_weights": {"canteen": -1}}, "body.type_weights.canteen"),
        ({"type_weights": {"moon_base": 1}}, "body.type_weights.moon_base.[key]"),
        ({"min_per_building": {"canteen": 101}}, "body.min_per_building.canteen"),
    ],
)
def test_bad_settings_are_refused(
    client: TestClient, world: World, campus: int, planner_settings: dict[str, Any], field: str
) -> None:
    response = client.post(
        f"{API}/schools/{campus}/placement-plan/recommendation",
        json=planner_settings,
        headers=world.headers["school_admin_a"],
    )

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


def test_school_without_enrollment_is_told_to_enter_it(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    with session_scope(seeded) as session:
        session.execute(
            sa.update(School).where(School.id == world.a.school_id).values(enrollment=None)
        )

    response = client.post(
        f"{API}/schools/{world.a.school_id}/placement-plan/recommendation",
        json={},
        headers=world.headers["school_admin_a"],
    )

    assert response.status_code == 422
    assert response.json()["code"] == "enrollment_missing"


def test_export_survives_control_characters_in_names(
    client: TestClient, world: World, campus: int, seeded: sessionmaker[Session]
) -> None:
    with session_scope(seeded) as session:
        session.execute(
            sa.update(Building)
            .where(Building.id == world.a.building_id)
            .values(name="学生公寓\x01 1 号楼")
        )

    response = client.post(
        f"{API}/schools/{campus}/placement-plan/recommendation/export",
        json={},
        headers=world.headers["school_admin_a"],
    )

    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    names = [row[1] for row in sheet.iter_rows(values_only=True)]
    assert "学生公寓 1 号楼" in names
