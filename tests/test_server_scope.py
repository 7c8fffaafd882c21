"""Scope: every route hides the objects outside the caller's school or company.

A school administrator must not read or change another school's data, an operator must
not see another operator's cabinets, and a hidden object gets the same response as a missing
one (404), so its existence does not leak.
"""

import pytest
from fastapi.testclient import TestClient

from server_helpers import World

pytest_plugins = ["server_fixtures"]

MISSING_ID = 999_999


def school_routes(world: World, school_id: int) -> list[tuple[str, str, dict[str, object] | None]]:
    """Return (method, path, JSON body) for every route under one school of the world."""
    site = world.a if school_id == world.a.school_id else world.b
    base = f"/api/v1/schools/{school_id}"
    return [
        ("GET", base, None),
        ("PATCH", base, {"enrollment": 1}),
        ("GET", f"{base}/buildings", None),
        ("POST", f"{base}/buildings", {"name": "图书馆", "location_type": "library"}),
        ("GET", f"{base}/buildings/{site.building_id}", None),
        ("PATCH", f"{base}/buildings/{site.building_id}", {"capacity": 10}),
        ("GET", f"{base}/placements", None),
        (
            "POST",
            f"{base}/placements",
            {"building_id": site.building_id, "description": "二楼走廊"},
        ),
        ("GET", f"{base}/placements/{site.placement_id}", None),
        ("PATCH", f"{base}/placements/{site.placement_id}", {"floor": 2}),
    ]


def test_school_admin_gets_404_on_other_school(client: TestClient, world: World) -> None:
    headers = world.headers["school_admin_a"]

    for method, path, body in school_routes(world, world.b.school_id):
        response = client.request(method, path, json=body, headers=headers)

        assert response.status_code == 404, (method, path, response.json())
        assert response.json()["code"] == "school_not_found", (method, path)


def test_school_admin_reaches_own_school(client: TestClient, world: World) -> None:
    headers = world.headers["school_admin_a"]

    for method, path, body in school_routes(world, world.a.school_id):
        response = client.request(method, path, json=body, headers=headers)

        assert response.status_code in (200, 201), (method, path, response.json())


def test_hidden_school_answers_like_missing(client: TestClient, world: World) -> None:
    headers = world.headers["school_admin_a"]

    hidden = client.get(f"/api/v1/schools/{world.b.school_id}", headers=headers)
    missing = client.get(f"/api/v1/schools/{MISSING_ID}", headers=headers)

    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["code"] == missing.json()["code"] == "school_not_found"
    assert set(hidden.json()) == set(missing.json())


def test_other_school_building_via_own_school(client: TestClient, world: World) -> None:
    headers = world.headers["school_admin_a"]
    base = f"/api/v1/schools/{world.a.school_id}"

    building = client.get(f"{base}/buildings/{world.b.building_id}", headers=headers)
    placement = client.get(f"{base}/placements/{world.b.placement_id}", headers=headers)
    moved = client.patch(
        f"{base}/placements/{world.a.placement_id}",
        json={"building_id": world.b.building_id},
        headers=headers,
    )

    assert building.status_code == 404
    assert building.json()["code"] == "building_not_found"
    assert placement.status_code == 404
    assert placement.json()["code"] == "placement_not_found"
    assert moved.status_code == 422
    assert moved.json()["code"] == "building_not_in_school"


def test_school_admin_lists_only_own_data(client: TestClient, world: World) -> None:
    headers = world.headers["school_admin_a"]

    schools = client.get("/api/v1/schools", headers=headers).json()
    cabinets = client.get("/api/v1/cabinets", headers=headers).json()
    operators = client.get("/api/v1/operators", headers=headers).json()

    assert [school["id"] for school in schools["items"]] == [world.a.school_id]
    assert schools["total"] == 1
    assert [cabinet["kiosk_id"] for cabinet in cabinets["items"]] == [world.a.kiosk_id]
    assert [operator["id"] for operator in operators["items"]] == [world.operator_a_id]


@pytest.mark.parametrize(
    ("method", "path_template"),
    [
        ("GET", "/api/v1/cabinets/{kiosk_b}"),
        ("GET", "/api/v1/operators/{operator_b}"),
        ("GET", "/api/v1/schools/{school_b}"),
        ("GET", "/api/v1/schools/{school_b}/buildings"),
        ("GET", "/api/v1/schools/{school_b}/placements"),
        ("GET", "/api/v1/schools/{school_b}/placements/{placement_b}"),
    ],
)
def test_operator_gets_404_on_other_operator(
    client: TestClient, world: World, method: str, path_template: str
) -> None:
    path = path_template.format(
        kiosk_b=world.b.kiosk_id,
        operator_b=world.operator_b_id,
        school_b=world.b.school_id,
        placement_b=world.b.placement_id,
    )

    response = client.request(method, path, headers=world.headers["operator_a"])

    assert response.status_code == 404, response.json()
    assert response.json()["code"].endswith("_not_found")


def test_operator_lists_only_own_cabinets(client: TestClient, world: World) -> None:
    headers = world.headers["operator_a"]

    own = client.get("/api/v1/cabinets", headers=headers).json()
    filtered = client.get(
        "/api/v1/cabinets", params={"operator_id": world.operator_b_id}, headers=headers
    ).json()
    by_school = client.get(
        "/api/v1/cabinets", params={"school_id": world.b.school_id}, headers=headers
    ).json()
    schools = client.get("/api/v1/schools", headers=headers).json()
    operators = client.get("/api/v1/operators", headers=headers).json()

    assert [cabinet["kiosk_id"] for cabinet in own["items"]] == [world.a.kiosk_id]
    assert own["items"][0]["operator_id"] == world.operator_a_id
    assert filtered["items"] == []
    assert filtered["total"] == 0
    assert by_school["items"] == []
    assert [school["id"] for school in schools["items"]] == [world.a.school_id]
    assert [operator["id"] for operator in operators["items"]] == [world.operator_a_id]


def test_operator_cannot_register_for_other(client: TestClient, world: World) -> None:
    response = client.post(
        "/api/v1/cabinets",
        json={
            "kiosk_id": "AH-10357-0002",
            "placement_id": world.a.placement_id,
            "operator_id": world.operator_b_id,
        },
        headers=world.headers["operator_a"],
    )

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_operator_cannot_edit_visible_school(client: TestClient, world: World) -> None:
    path = f"/api/v1/schools/{world.a.school_id}"

    response = client.patch(path, json={"enrollment": 1}, headers=world.headers["operator_a"])

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert response.json()["message"].startswith("没有权限")


def test_province_admin_sees_everything(client: TestClient, world: World) -> None:
    headers = world.headers["province_admin"]

    schools = client.get("/api/v1/schools", params={"limit": 500}, headers=headers).json()
    cabinets = client.get("/api/v1/cabinets", headers=headers).json()
    other = client.get(f"/api/v1/cabinets/{world.b.kiosk_id}", headers=headers)

    assert schools["total"] == 119
    assert len(schools["items"]) == 119
    assert [cabinet["kiosk_id"] for cabinet in cabinets["items"]] == [
        world.a.kiosk_id,
        world.b.kiosk_id,
    ]
    assert other.status_code == 200
    assert other.json()["school_id"] == world.b.school_id


@pytest.mark.parametrize(
    "path", ["/api/v1/schools", "/api/v1/cabinets", "/api/v1/operators"], ids=str
)
def test_student_denied_registry(client: TestClient, world: World, path: str) -> None:
    response = client.get(path, headers=world.headers["student"])

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_student_reads_catalog(client: TestClient, world: World) -> None:
    headers = world.headers["student"]

    products = client.get("/api/v1/products", headers=headers)
    me = client.get("/api/v1/auth/me", headers=headers)

    assert products.status_code == 200
    assert products.json()["total"] == 42
    assert me.json()["id"] == world.student_id
    assert me.json()["role"] == "student"


def test_every_route_requires_sign_in(client: TestClient, world: World) -> None:
    public = {"/api/v1/auth/token", "/api/v1/health"}
    values = {
        "school_id": world.a.school_id,
        "building_id": world.a.building_id,
        "placement_id": world.a.placement_id,
        "operator_id": world.operator_a_id,
        "kiosk_id": world.a.kiosk_id,
        "code": "340422",
        "product_id": 1,
        "alert_id": 1,
        "purchase_id": "00000000-0000-0000-0000-000000000001",
        "sale_id": "00000000-0000-0000-0000-000000000002",
        "user_id": 1,
        "entry_id": 1,
        "voucher_id": 1,
        "week": "2026-11-16",
    }
    checked = 0

    for path_template, operations in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if path_template in public:
            continue
        path = path_template.format(**values)
        for method in operations:
            response = client.request(method.upper(), path, json={})

            assert response.status_code == 401, (method, path_template)
            assert response.json()["code"] == "not_authenticated", (method, path_template)
            assert response.headers["www-authenticate"] == "Bearer"
            checked += 1

    assert checked >= 20
