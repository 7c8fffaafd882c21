"""The JSON API: registry and catalog routes, money as integers, and the error body."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.services.audit import list_audit_entries
from server_helpers import World

pytest_plugins = ["server_fixtures"]

NEW_PRODUCT: dict[str, Any] = {
    "certificate_number": "AH-FP-2020-000123",
    "name": "寿县黑猪肉礼盒",
    "name_en": "Shou County black pork gift box",
    "supplier": "寿县示例合作社",
    "source_county_code": "341521",
    "category": "肉禽",
    "unit_weight_g": 1000,
    "weight_tolerance_g": 20,
    "price_fen": 8990,
    "valid_from": "2020-06-01",
    "valid_until": "2023-05-31",
}


def assert_error_shape(body: dict[str, Any]) -> None:
    assert set(body) <= {"code", "message", "message_en", "details"}
    assert isinstance(body["code"], str)
    assert body["code"]
    assert isinstance(body["message"], str)
    assert isinstance(body["message_en"], str)
    # Chinese first: the user-facing message contains CJK characters.
    assert any("\u4e00" <= char <= "\u9fff" for char in body["message"]), body["message"]


# --- Schools ----------------------------------------------------------------------------------


def test_create_school_with_old_county_code(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    response = client.post(
        "/api/v1/schools",
        json={
            "name": "示例职业技术学院",
            "school_type": "vocational",
            "city": "淮南市",
            "enrollment": 9000,
            "staff_count": 600,
            "designated_county_codes": ["341521", "340422"],
        },
        headers=world.headers["province_admin"],
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["school_type"] == "vocational"
    assert [county["code"] for county in body["designated_counties"]] == ["340422"]
    assert body["designated_counties"][0]["name"] == "寿县"
    with seeded() as session:
        audit = list_audit_entries(session, object_type="school", object_id=body["id"])
        assert [entry.action for entry in audit] == ["school.create"]
        assert audit[0].actor_user_id == world.province_admin_id
        assert audit[0].after is not None
        assert audit[0].after["designated_county_codes"] == ["340422"]


def test_create_school_duplicate_name_409(client: TestClient, world: World) -> None:
    response = client.post(
        "/api/v1/schools",
        json={"name": "安徽大学", "school_type": "undergraduate", "city": "合肥市"},
        headers=world.headers["province_admin"],
    )

    assert response.status_code == 409
    assert_error_shape(response.json())
    assert response.json()["code"] == "school_exists"
    assert response.json()["message"] == "学校已存在：name = 安徽大学"


def test_create_school_province_only(client: TestClient, world: World) -> None:
    response = client.post(
        "/api/v1/schools",
        json={"name": "新学校", "school_type": "undergraduate", "city": "合肥市"},
        headers=world.headers["school_admin_a"],
    )

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert response.json()["message"] == "没有权限：此操作仅限省级专班"


def test_school_admin_updates_enrollment_only(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    path = f"/api/v1/schools/{world.a.school_id}"
    headers = world.headers["school_admin_a"]

    enrollment = client.patch(
        path, json={"enrollment": 36000, "staff_count": 3000}, headers=headers
    )
    rename = client.patch(path, json={"name": "安徽大学(新)"}, headers=headers)
    designate = client.patch(path, json={"designated_county_codes": []}, headers=headers)

    assert enrollment.status_code == 200
    assert enrollment.json()["enrollment"] == 36000
    assert enrollment.json()["staff_count"] == 3000
    assert rename.status_code == 403
    assert rename.json()["code"] == "permission_denied"
    assert designate.status_code == 403
    with seeded() as session:
        audit = list_audit_entries(session, object_type="school", object_id=world.a.school_id)
        assert [entry.action for entry in audit] == ["school.update"]
        assert audit[0].before == {"enrollment": 35812, "staff_count": None}
        assert audit[0].after == {"enrollment": 36000, "staff_count": 3000}


def test_province_admin_designates_counties(client: TestClient, world: World) -> None:
    path = f"/api/v1/schools/{world.b.school_id}"

    response = client.patch(
        path,
        json={"designated_county_codes": ["340824"]},
        headers=world.headers["province_admin"],
    )

    assert response.status_code == 200
    counties = response.json()["designated_counties"]
    assert [(county["code"], county["name"]) for county in counties] == [("340882", "潜山市")]


def test_school_update_rejects_null_name(client: TestClient, world: World) -> None:
    response = client.patch(
        f"/api/v1/schools/{world.a.school_id}",
        json={"name": None},
        headers=world.headers["province_admin"],
    )

    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"


# --- Buildings, placements, operators, cabinets ---------------------------------------------


def test_building_coordinates_round_trip(client: TestClient, world: World) -> None:
    path = f"/api/v1/schools/{world.a.school_id}/buildings"
    headers = world.headers["school_admin_a"]

    created = client.post(
        path,
        json={
            "name": "第一食堂",
            "location_type": "canteen",
            "capacity": 800,
            "latitude": 31.765432,
            "longitude": "117.183009",
        },
        headers=headers,
    )
    fetched = client.get(f"{path}/{created.json()['id']}", headers=headers)

    assert created.status_code == 201, created.json()
    assert fetched.json()["latitude"] == 31.765432
    assert fetched.json()["longitude"] == 117.183009
    assert fetched.json()["location_type"] == "canteen"
    assert fetched.json()["capacity"] == 800


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        pytest.param({"latitude": 31.5}, "body", id="latitude-alone"),
        pytest.param({"latitude": 91, "longitude": 117}, "body.latitude", id="latitude-range"),
        pytest.param(
            {"latitude": 31.1234567, "longitude": 117}, "body.latitude", id="seven-decimals"
        ),
        pytest.param({"capacity": 12.5}, "body.capacity", id="capacity-fraction"),
        pytest.param({"location_type": "garage"}, "body.location_type", id="unknown-type"),
    ],
)
def test_building_validation(
    client: TestClient, world: World, extra: dict[str, Any], field: str
) -> None:
    response = client.post(
        f"/api/v1/schools/{world.a.school_id}/buildings",
        json={"name": "体育馆", "location_type": "sports_venue", **extra},
        headers=world.headers["school_admin_a"],
    )

    assert response.status_code == 422
    body = response.json()
    assert_error_shape(body)
    assert body["code"] == "validation_failed"
    assert [detail["field"] for detail in body["details"]] == [field]


def test_duplicate_building_name_409(client: TestClient, world: World) -> None:
    response = client.post(
        f"/api/v1/schools/{world.a.school_id}/buildings",
        json={"name": "学生公寓 1 号楼", "location_type": "dormitory"},
        headers=world.headers["school_admin_a"],
    )

    assert response.status_code == 409
    assert response.json()["code"] == "building_exists"


def test_placement_create_and_move(client: TestClient, world: World) -> None:
    base = f"/api/v1/schools/{world.a.school_id}"
    headers = world.headers["school_admin_a"]
    library = client.post(
        f"{base}/buildings", json={"name": "图书馆", "location_type": "library"}, headers=headers
    ).json()

    created = client.post(
        f"{base}/placements",
        json={"building_id": world.a.building_id, "floor": -1, "description": "地下一层自习区"},
        headers=headers,
    )
    moved = client.patch(
        f"{base}/placements/{created.json()['id']}",
        json={"building_id": library["id"], "floor": 2},
        headers=headers,
    )
    listed = client.get(
        f"{base}/placements", params={"building_id": library["id"]}, headers=headers
    )

    assert created.status_code == 201
    assert created.json()["school_id"] == world.a.school_id
    assert created.json()["floor"] == -1
    assert moved.status_code == 200
    assert moved.json()["building_id"] == library["id"]
    assert moved.json()["floor"] == 2
    assert [placement["id"] for placement in listed.json()["items"]] == [created.json()["id"]]


def test_operator_create_and_credit_code(client: TestClient, world: World) -> None:
    headers = world.headers["province_admin"]

    created = client.post(
        "/api/v1/operators",
        json={"name": "合肥示例运营有限公司", "credit_code": "91340100MA2XXXXX0A"},
        headers=headers,
    )
    invalid = client.post(
        "/api/v1/operators",
        json={"name": "另一家公司", "credit_code": "91340100MA2XXXXXOI"},
        headers=headers,
    )
    duplicate = client.post(
        "/api/v1/operators",
        json={"name": "第三家公司", "credit_code": "91340100MA2XXXXX0A"},
        headers=headers,
    )

    assert created.status_code == 201, created.json()
    assert invalid.status_code == 422
    assert invalid.json()["details"][0]["field"] == "body.credit_code"
    assert invalid.json()["details"][0]["message"] == "格式不正确"
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "operator_exists"


def test_operator_registers_own_cabinet(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    headers = world.headers["operator_a"]

    created = client.post(
        "/api/v1/cabinets",
        json={
            "kiosk_id": "AH-10359-0002",
            "placement_id": world.b.placement_id,
            "firmware_version": "1.4.2",
        },
        headers=headers,
    )
    duplicate = client.post(
        "/api/v1/cabinets",
        json={"kiosk_id": "AH-10359-0002", "placement_id": world.b.placement_id},
        headers=headers,
    )
    schools = client.get("/api/v1/schools", headers=headers).json()

    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["operator_id"] == world.operator_a_id
    assert body["school_id"] == world.b.school_id
    assert body["service_status"] == "provisioned"
    assert body["online"] is False
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "cabinet_exists"
    # The new cabinet makes school B visible to operator A.
    assert {school["id"] for school in schools["items"]} == {world.a.school_id, world.b.school_id}
    with seeded() as session:
        audit = list_audit_entries(session, object_type="cabinet", object_id="AH-10359-0002")
        assert [entry.action for entry in audit] == ["cabinet.register"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({"kiosk_id": "AH-1035-0001"}, 422, "validation_failed", id="kiosk-format"),
        pytest.param({"placement_id": 999_999}, 404, "placement_not_found", id="no-placement"),
        pytest.param({"operator_id": 999_999}, 404, "operator_not_found", id="no-operator"),
        pytest.param({"operator_id": None}, 422, "operator_required", id="no-operator-id"),
    ],
)
def test_register_cabinet_errors(
    client: TestClient, world: World, body: dict[str, Any], status: int, code: str
) -> None:
    request = {
        "kiosk_id": "AH-10357-0009",
        "placement_id": world.a.placement_id,
        "operator_id": world.operator_a_id,
        **body,
    }

    response = client.post(
        "/api/v1/cabinets", json=request, headers=world.headers["province_admin"]
    )

    assert response.status_code == status, response.json()
    assert_error_shape(response.json())
    assert response.json()["code"] == code


# --- Products and money -----------------------------------------------------------------------


def test_product_list_money_is_integer(client: TestClient, world: World) -> None:
    response = client.get(
        "/api/v1/products", params={"limit": 100}, headers=world.headers["student"]
    )

    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 42
    for product in items:
        assert type(product["price_fen"]) is int
        assert type(product["unit_weight_g"]) is int
        assert type(product["weight_tolerance_g"]) is int
        assert product["is_sample"] is True
        assert product["sample_notice"].startswith("示例数据")
        assert product["sample_notice_en"].startswith("Sample data")


def test_product_create_and_price_audit(
    client: TestClient, world: World, seeded: sessionmaker[Session]
) -> None:
    headers = world.headers["province_admin"]

    created = client.post("/api/v1/products", json=NEW_PRODUCT, headers=headers)
    product_id = created.json()["id"]
    updated = client.patch(
        f"/api/v1/products/{product_id}", json={"price_fen": 9990}, headers=headers
    )

    assert created.status_code == 201, created.json()
    assert created.json()["source_county"]["code"] == "340422"
    assert created.json()["source_county"]["name"] == "寿县"
    assert created.json()["is_sample"] is False
    assert created.json()["sample_notice"] is None
    assert updated.status_code == 200
    assert updated.json()["price_fen"] == 9990
    with seeded() as session:
        audit = list_audit_entries(session, object_type="product", object_id=product_id)
        assert [entry.action for entry in audit] == ["product.create", "product.update"]
        assert audit[1].before == {"price_fen": 8990}
        assert audit[1].after == {"price_fen": 9990}
        assert audit[1].actor_label == "province"


@pytest.mark.parametrize(
    ("price", "error_type", "message"),
    [
        pytest.param(89.9, "int_type", "必须是整数", id="yuan-float"),
        pytest.param(8990.0, "int_type", "必须是整数", id="whole-float"),
        pytest.param("8990", "int_type", "必须是整数", id="string"),
        pytest.param(0, "greater_than", "必须大于 0", id="zero"),
        pytest.param(-100, "greater_than", "必须大于 0", id="negative"),
    ],
)
def test_product_price_must_be_positive_int(
    client: TestClient, world: World, price: object, error_type: str, message: str
) -> None:
    response = client.post(
        "/api/v1/products",
        json={**NEW_PRODUCT, "price_fen": price},
        headers=world.headers["province_admin"],
    )

    assert response.status_code == 422
    body = response.json()
    assert_error_shape(body)
    assert body["code"] == "validation_failed"
    assert body["details"] == [
        {
            "field": "body.price_fen",
            "type": error_type,
            "message": message,
            "message_en": body["details"][0]["message_en"],
        }
    ]
    assert body["message"] == f"请求数据无效：body.price_fen {message}"


def test_product_inconsistent_fields(client: TestClient, world: World) -> None:
    headers = world.headers["province_admin"]
    created = client.post("/api/v1/products", json=NEW_PRODUCT, headers=headers).json()

    tolerance = client.post(
        "/api/v1/products",
        json={**NEW_PRODUCT, "certificate_number": "X-2", "weight_tolerance_g": 1000},
        headers=headers,
    )
    dates = client.patch(
        f"/api/v1/products/{created['id']}", json={"valid_until": "2019-01-01"}, headers=headers
    )

    assert tolerance.status_code == 422
    assert tolerance.json()["code"] == "validation_failed"
    assert dates.status_code == 422
    assert dates.json()["code"] == "product_fields_inconsistent"
    assert "2019-01-01" in dates.json()["message_en"]


def test_product_duplicate_certificate_409(client: TestClient, world: World) -> None:
    headers = world.headers["province_admin"]

    client.post("/api/v1/products", json=NEW_PRODUCT, headers=headers)
    duplicate = client.post("/api/v1/products", json=NEW_PRODUCT, headers=headers)

    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "product_exists"


def test_product_write_province_only(client: TestClient, world: World) -> None:
    response = client.post(
        "/api/v1/products", json=NEW_PRODUCT, headers=world.headers["operator_a"]
    )

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_products_valid_on_filter(client: TestClient, world: World) -> None:
    headers = world.headers["province_admin"]
    client.post("/api/v1/products", json=NEW_PRODUCT, headers=headers)

    in_2022 = client.get("/api/v1/products", params={"valid_on": "2022-01-01"}, headers=headers)
    in_2024 = client.get("/api/v1/products", params={"valid_on": "2024-01-01"}, headers=headers)

    assert in_2022.json()["total"] == 43
    assert in_2024.json()["total"] == 42


# --- Error body -------------------------------------------------------------------------------


def test_missing_fields_listed_in_chinese(client: TestClient, world: World) -> None:
    response = client.post(
        "/api/v1/schools", json={"city": "合肥市"}, headers=world.headers["province_admin"]
    )

    assert response.status_code == 422
    body = response.json()
    assert_error_shape(body)
    assert {detail["field"] for detail in body["details"]} == {"body.name", "body.school_type"}
    assert {detail["message"] for detail in body["details"]} == {"缺少必填字段"}
    assert body["message"].startswith("请求数据无效：")
    assert body["message"].endswith("（共 2 处错误）")
    assert body["message_en"].startswith("Request validation failed: ")


def test_unknown_field_rejected(client: TestClient, world: World) -> None:
    response = client.patch(
        f"/api/v1/schools/{world.a.school_id}",
        json={"enrolment": 1},
        headers=world.headers["province_admin"],
    )

    assert response.status_code == 422
    assert response.json()["details"][0]["type"] == "extra_forbidden"
    assert response.json()["details"][0]["message"] == "不允许的字段"


def test_invalid_json_body(client: TestClient, world: World) -> None:
    response = client.post(
        "/api/v1/schools",
        content=b"{not json",
        headers={**world.headers["province_admin"], "Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert_error_shape(response.json())
    assert response.json()["details"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    "content",
    [b'{"name": "\xe5\xae\x89\xff"}', b"[" * 100_000],
    ids=["not-utf8", "nested-too-deep"],
)
def test_unparsable_json_body_422(client: TestClient, world: World, content: bytes) -> None:
    response = client.post(
        "/api/v1/schools",
        content=content,
        headers={**world.headers["province_admin"], "Content-Type": "application/json"},
    )

    assert response.status_code == 422
    body = response.json()
    assert_error_shape(body)
    assert body["code"] == "validation_failed"
    assert body["details"] == [
        {
            "field": "body",
            "type": "json_invalid",
            "message": "请求体不是有效的 JSON",
            "message_en": "JSON decode error",
        }
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v1/operators", {"name": "皖北\x00运营"}, "body.name"),
        ("POST", "/api/v1/auth/token", {"username": "a\x00", "password": "x"}, "body.username"),
        ("GET", "/api/v1/products?category=%E7%B2%AE%00", None, "query.category"),
        ("GET", "/api/v1/sales?kiosk_id=AH-10357-0001%00", None, "query.kiosk_id"),
        ("GET", "/api/v1/cabinets/AH-10357-0001%00", None, "path.kiosk_id"),
    ],
    ids=["body", "sign-in", "query", "query-kiosk", "path"],
)
def test_nul_character_rejected_422(
    client: TestClient, world: World, method: str, path: str, body: object, field: str
) -> None:
    response = client.request(method, path, json=body, headers=world.headers["province_admin"])

    assert response.status_code == 422, response.text
    error = response.json()
    assert_error_shape(error)
    assert error["code"] == "validation_failed"
    assert error["details"][0]["field"] == field
    assert error["details"][0]["type"] == "string_nul"
    assert error["details"][0]["message"] == "不能包含空字符（U+0000）"


def test_count_beyond_int32_rejected(client: TestClient, world: World) -> None:
    response = client.patch(
        f"/api/v1/schools/{world.a.school_id}",
        json={"enrollment": 2**31},
        headers=world.headers["province_admin"],
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    assert response.json()["details"][0]["field"] == "body.enrollment"
    assert response.json()["details"][0]["type"] == "less_than_equal"


def test_bad_path_parameter(client: TestClient, world: World) -> None:
    response = client.get("/api/v1/schools/abc", headers=world.headers["province_admin"])

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "path.school_id"
    assert response.json()["details"][0]["message"] == "必须是整数"


def test_unknown_route_json_404(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert_error_shape(response.json())
    assert response.json()["code"] == "not_found"


def test_wrong_method_json_405(client: TestClient) -> None:
    response = client.delete("/api/v1/counties")

    assert response.status_code == 405
    assert_error_shape(response.json())
    assert response.json()["code"] == "method_not_allowed"


def test_health(client: TestClient) -> None:
    response = client.get("/api/v1/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_openapi_documents_every_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]

    assert len(operations) >= 23
    for path, method, operation in operations:
        responses = operation["responses"]
        success = next(code for code in responses if code.startswith("2"))
        assert "content" in responses[success], (method, path)
        if path == "/api/v1/health":
            continue
        for code, response in responses.items():
            if code.startswith("4"):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorBody"), (method, path, code)
    # FastAPI's default 422 schema would mean a route documents an error body it never sends.
    assert "HTTPValidationError" not in str(schema["paths"])


@pytest.mark.parametrize(
    ("method", "path_template", "body"),
    [
        ("GET", "/api/v1/schools/{big}", None),
        ("GET", "/api/v1/products/{big}", None),
        ("GET", "/api/v1/schools?offset={big}", None),
        ("POST", "/api/v1/cabinets", {"kiosk_id": "AH-10357-0003", "placement_id": "{big}"}),
    ],
)
def test_huge_integer_is_rejected_not_a_server_error(
    client: TestClient, world: World, method: str, path_template: str, body: object
) -> None:
    admin_headers = world.headers["province_admin"]
    big = 2**63
    json_body = (
        {k: (big if v == "{big}" else v) for k, v in body.items()}
        if isinstance(body, dict)
        else None
    )

    response = client.request(
        method, path_template.format(big=big), json=json_body, headers=admin_headers
    )

    assert response.status_code in (404, 422), response.text
    assert "code" in response.json()
